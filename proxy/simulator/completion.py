"""What a chat completion will contain, decided in full before its first byte is written."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .options import Options
from .resource import Resource
from .wire import CHOICE_WORD_SHIFT, WORDS, compact, random_id, words


@dataclass(frozen=True)
class ChatRequest:
    """What the body of a chat completion request asks for."""

    stream: bool
    include_usage: bool
    n: int
    max_tokens: int | None
    prompt: str
    tool_name: str


@dataclass(frozen=True)
class Completion:
    """A completion decided in full before its first byte is written."""

    id: str
    created: int
    model: str
    fingerprint: str
    n: int
    steps: int
    """Content (or tool-argument) chunks per choice."""
    finish_reason: str
    scenario: str
    category: str
    tool_name: str | None
    tool_fragments: tuple[str, ...]
    include_usage: bool
    async_filter: bool
    trailing_annotation: bool
    no_done: bool
    first_token_delay: float
    token_delay: float
    drop_after: int | None
    """Total content chunks after which the connection is dropped (scenario=disconnect)."""
    prompt_chars: int
    usage: dict[str, Any]
    stamp: bool = False
    """Each chunk's ``obfuscation`` is its send time (``x-simulator: stamp=1``)."""

    def text(self, choice: int) -> str:
        return "".join(self.piece(choice, step) for step in range(self.steps))

    def piece(self, choice: int, step: int) -> str:
        if self.tool_name is not None:
            return self.tool_fragments[step]
        return WORDS[(step + CHOICE_WORD_SHIFT * choice) % len(WORDS)]


def plan_completion(options: Options, chat: ChatRequest, resource: Resource) -> Completion:
    config = resource.config
    tokens = options.tokens_or(config.tokens)
    steps, finish = _length(options.scenario, tokens, chat.max_tokens)
    drop_after = None
    if options.scenario == "disconnect":
        drop_after = tokens // 2 if options.disconnect_after is None else options.disconnect_after
    emitted = steps * chat.n if drop_after is None else min(drop_after, steps * chat.n)
    tool = chat.tool_name if options.scenario == "tool_calls" else None
    return Completion(
        id=random_id("chatcmpl-", 29),
        created=int(time.time()),
        model=config.model,
        fingerprint=resource.fingerprint,
        n=chat.n,
        steps=steps,
        finish_reason=finish,
        scenario=options.scenario,
        category=options.category or "violence",
        tool_name=tool,
        tool_fragments=_tool_fragments(tokens) if tool is not None else (),
        include_usage=chat.include_usage,
        async_filter=options.async_filter,
        trailing_annotation=options.trailing_annotation,
        no_done=options.no_done,
        first_token_delay=_pick(options.first_token_delay, config.first_token_delay),
        token_delay=_pick(options.token_delay, config.token_delay),
        drop_after=drop_after,
        prompt_chars=len(chat.prompt),
        usage=usage(prompt_tokens(chat.prompt), emitted, options),
        stamp=options.stamp,
    )


def _length(scenario: str, tokens: int, max_tokens: int | None) -> tuple[int, str]:
    """Chunks per choice and the finish reason."""
    if scenario == "content_filter":  # the output filter cuts in halfway
        return tokens // 2, "content_filter"
    if scenario == "error_event":  # so does the model's failure
        return tokens // 2, "stop"
    if max_tokens is not None and max_tokens < tokens:
        return max_tokens, "length"
    return tokens, {"length": "length", "tool_calls": "tool_calls"}.get(scenario, "stop")


def _pick(override: float | None, default: float) -> float:
    return float(default if override is None else override)


def _tool_fragments(pieces: int) -> tuple[str, ...]:
    """Arguments that join into a JSON object, cut into ``pieces`` non-empty fragments."""
    arguments = compact(
        {"location": "Paris, France", "unit": "celsius", "note": words(max(pieces, 1))}
    )
    size = len(arguments)
    return tuple(arguments[size * k // pieces : size * (k + 1) // pieces] for k in range(pieces))


def prompt_tokens(text: str) -> int:
    # A deterministic stand-in for a tokenizer; +7 is roughly the chat template overhead.
    return len(text) // 4 + 7


def usage(prompt: int, completion: int, options: Options) -> dict[str, Any]:
    """Azure's ``usage`` object; reasoning tokens are counted inside ``completion_tokens``."""
    total_completion = completion + options.reasoning_tokens
    return {
        "completion_tokens": total_completion,
        "completion_tokens_details": {
            "accepted_prediction_tokens": 0,
            "audio_tokens": 0,
            "reasoning_tokens": options.reasoning_tokens,
            "rejected_prediction_tokens": 0,
        },
        "prompt_tokens": prompt,
        "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": options.cached_tokens},
        "total_tokens": prompt + total_completion,
    }
