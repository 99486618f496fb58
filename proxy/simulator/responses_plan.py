"""What one Responses API answer will contain, decided in full before its first byte.

How each ``x-simulator`` scenario ends a response is in ``docs/responses-wire.md`` §5 and §9.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

from .completion import _tool_fragments, prompt_tokens
from .options import Options
from .resource import Resource
from .wire import WORDS, call_id

_MAX_SUMMARY_DELTAS: Final = 12  # a summary is much shorter than the reasoning behind it
_ID_HEX: Final = 50  # Azure's ids: a prefix and 50 hex digits


@dataclass(frozen=True)
class ResponsesRequest:
    """What the body of a ``POST .../responses`` asks for."""

    stream: bool
    max_output_tokens: int | None
    prompt: str
    tool_name: str
    echo: dict[str, Any]
    """Request fields a Response object repeats (``instructions``, ``tools``, ...)."""


@dataclass(frozen=True)
class Ids:
    """The ids of one response and of its output items."""

    response: str
    reasoning: str
    message: str
    function_call: str
    call: str


@dataclass(frozen=True)
class Reply:
    """A Responses answer decided in full: its items, how it ends, and its pacing."""

    ids: Ids
    created_at: int
    model: str
    scenario: str
    status: str
    """How the response ends: ``completed``, ``incomplete`` or ``failed``."""
    incomplete_reason: str | None
    steps: int
    """Output deltas planned (text words or function-argument fragments)."""
    tool_name: str | None
    tool_fragments: tuple[str, ...]
    summary: tuple[str, ...]
    """Reasoning-summary deltas, sent before any output; empty without reasoning tokens."""
    category: str
    kill: bool
    """The content-filter kill: ``response.created``, ``response.failed``, ``error``."""
    failed_event: bool
    """``error_event`` ends with ``response.failed`` rather than an ``error`` frame."""
    first_token_delay: float
    token_delay: float
    drop_after: int | None
    """Output deltas after which the connection is cut (``scenario=disconnect``)."""
    prompt_chars: int
    usage: dict[str, Any]
    stamp: bool
    echo: dict[str, Any]

    @property
    def emitted(self) -> int:
        """Output deltas that are actually sent."""
        return self.steps if self.drop_after is None else min(self.steps, self.drop_after)

    def piece(self, step: int) -> str:
        if self.tool_name is not None:
            return self.tool_fragments[step]
        return WORDS[step % len(WORDS)]

    def text(self) -> str:
        """The output sent: the text, or the function call's arguments."""
        return "".join(self.piece(step) for step in range(self.emitted))

    def summary_text(self) -> str:
        return "".join(self.summary)


def plan_reply(options: Options, body: ResponsesRequest, resource: Resource) -> Reply:
    config = resource.config
    tokens = options.tokens_or(config.tokens)
    reasoning = options.reasoning_tokens
    steps, status, reason = _ending(options.scenario, tokens, reasoning, body.max_output_tokens)
    drop_after = None
    if options.scenario == "disconnect":
        drop_after = tokens // 2 if options.disconnect_after is None else options.disconnect_after
    kill = options.scenario == "content_filter" and body.stream and options.filter_ending == "kill"
    if kill:
        status, reason = "failed", None
    if options.scenario == "error_event" and body.stream:
        status = "failed"
    tool = body.tool_name if options.scenario == "tool_calls" else None
    emitted = steps if drop_after is None else min(steps, drop_after)
    return Reply(
        ids=_ids(),
        created_at=int(time.time()),
        model=config.model,
        scenario=options.scenario,
        status=status,
        incomplete_reason=reason,
        steps=steps,
        tool_name=tool,
        tool_fragments=_tool_fragments(tokens) if tool is not None and tokens else (),
        summary=tuple(WORDS[i % len(WORDS)] for i in range(min(reasoning, _MAX_SUMMARY_DELTAS))),
        category=options.category or "violence",
        kill=kill,
        failed_event=options.error_ending == "failed",
        first_token_delay=float(_pick(options.first_token_delay, config.first_token_delay)),
        token_delay=float(_pick(options.token_delay, config.token_delay)),
        drop_after=drop_after,
        prompt_chars=len(body.prompt),
        usage=responses_usage(prompt_tokens(body.prompt), emitted, options),
        stamp=options.stamp,
        echo=body.echo,
    )


def _ending(
    scenario: str, tokens: int, reasoning: int, max_output_tokens: int | None
) -> tuple[int, str, str | None]:
    """Output deltas, final status and ``incomplete_details.reason`` (§5)."""
    if scenario == "content_filter":  # the output filter cuts in halfway, as on chat
        return tokens // 2, "incomplete", "content_filter"
    if scenario == "error_event":  # so does the model's failure
        return tokens // 2, "completed", None
    if max_output_tokens is not None and max_output_tokens < tokens + reasoning:
        # The limit counts reasoning tokens too: reasoning can use up the whole budget.
        return max(0, min(tokens, max_output_tokens - reasoning)), "incomplete", "max_output_tokens"
    if scenario == "length":
        return tokens, "incomplete", "max_output_tokens"
    return tokens, "completed", None


def _pick(override: float | None, default: float) -> float:
    return default if override is None else override


def _ids() -> Ids:
    def make(prefix: str) -> str:
        return prefix + secrets.token_hex(_ID_HEX // 2)

    return Ids(make("resp_"), make("rs_"), make("msg_"), make("fc_"), call_id())


def responses_usage(prompt: int, output: int, options: Options) -> dict[str, Any]:
    """The Responses ``usage`` object (§4); reasoning tokens count inside ``output_tokens``."""
    total_output = output + options.reasoning_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": options.cached_tokens},
        "output_tokens": total_output,
        "output_tokens_details": {"reasoning_tokens": options.reasoning_tokens},
        "total_tokens": prompt + total_output,
    }
