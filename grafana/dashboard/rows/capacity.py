"""The Capacity row: the rate-limit headroom Azure OpenAI last reported."""

from __future__ import annotations

from ..layout import Layout
from ..panels import target, timeseries
from ..queries import sel


def add(lay: Layout) -> None:
    lay.row("Capacity")
    for resource, threshold in (("requests", None), ("tokens", 1000.0)):
        lay.add(
            timeseries(
                f"Rate-limit remaining: {resource}",
                f"x-ratelimit-remaining-{resource} as last reported by Azure OpenAI."
                + (" Dashed line: the alert threshold." if threshold else ""),
                [
                    target(
                        "min by (deployment) ("
                        + sel("aoai_proxy_upstream_ratelimit_remaining", f'resource="{resource}"')
                        + ")",
                        "{{deployment}}",
                    )
                ],
                "short",
                threshold=threshold,
            ),
            w=12,
        )
