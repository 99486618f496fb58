"""The Tokens row: prompt, completion, cached and reasoning tokens per second."""

from __future__ import annotations

from ..layout import Layout
from ..panels import target, timeseries
from ..queries import rate


def add(lay: Layout) -> None:
    lay.row("Tokens")
    for token_type, note in (
        ("prompt", "Prompt (input) tokens per second."),
        ("completion", "Completion (output) tokens per second, reasoning tokens included."),
        ("cached", "Prompt tokens served from the prompt cache, per second."),
        ("reasoning", "Reasoning tokens per second (part of the completion tokens)."),
    ):
        lay.add(
            timeseries(
                f"{token_type.capitalize()} tokens/s",
                f"{note} By deployment and client, from usage.",
                [
                    target(
                        rate(
                            "aoai_proxy_tokens_total",
                            f'token_type="{token_type}"',
                            by="deployment, client",
                        ),
                        "{{deployment}} / {{client}}",
                    )
                ],
                "short",
                stack=True,
            ),
            w=6,
        )
