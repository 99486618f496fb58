"""The ``x-simulator`` header, parsed and checked into :class:`Options`.

The keys and what they do are documented in the package docstring (``proxy.simulator``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .errors import bad_control
from .wire import CATEGORIES

SCENARIOS: Final = frozenset(
    {
        "stop", "length", "tool_calls", "content_filter", "prompt_filter", "rate_limit",
        "server_error", "disconnect", "error_event",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    """One request's ``x-simulator`` choices; ``None`` means the configured default."""

    scenario: str = "stop"
    category: str | None = None
    tokens: int | None = None
    first_token_delay: float | None = None
    token_delay: float | None = None
    async_filter: bool = False
    trailing_annotation: bool = False
    no_done: bool = False
    retry_after_s: float | None = None
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    disconnect_after: int | None = None
    stamp: bool = False
    """Put the send time in each chunk's ``obfuscation`` field (for latency benchmarks)."""
    filter_ending: str = "kill"
    """Responses only: how a filtered stream ends, ``kill`` (failed + error) or ``incomplete``."""
    error_ending: str = "error"
    """Responses only: how ``error_event`` ends, an ``error`` frame or ``response.failed``."""

    def tokens_or(self, default: int) -> int:
        """Content chunks per choice: the header's ``tokens``, else ``default``."""
        return default if self.tokens is None else self.tokens


def _choice_of(options: frozenset[str]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(sorted(options))}")
        return value

    return parse


def _count(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 1_000_000:
        raise ValueError("must be an integer from 0 to 1000000")
    return number


def _bounded(value: str, limit: float) -> float:
    number = float(value)
    if not 0 <= number <= limit:  # also rejects nan
        raise ValueError(f"must be a number from 0 to {limit:g}")
    return number


def _seconds(value: str) -> float:
    return _bounded(value, 3600)


def _millis(value: str) -> float:
    """Milliseconds, up to the same hour `_seconds` allows."""
    return _bounded(value, 3_600_000) / 1000


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ValueError("must be 1 or 0")


def _async_filter_mode(value: str) -> bool:
    return _choice_of(frozenset({"default", "async"}))(value) == "async"


# key -> (field of Options, parser); the parser's ValueError text goes to the user.
_KEYS: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    "scenario": ("scenario", _choice_of(SCENARIOS)),
    "category": ("category", _choice_of(CATEGORIES)),
    "tokens": ("tokens", _count),
    "first_token_delay_ms": ("first_token_delay", _millis),
    "token_delay_ms": ("token_delay", _millis),
    "filter_mode": ("async_filter", _async_filter_mode),
    "trailing_annotation": ("trailing_annotation", _flag),
    "no_done": ("no_done", _flag),
    "retry_after_s": ("retry_after_s", _seconds),
    "reasoning_tokens": ("reasoning_tokens", _count),
    "cached_tokens": ("cached_tokens", _count),
    "disconnect_after": ("disconnect_after", _count),
    "stamp": ("stamp", _flag),
    "filter_ending": ("filter_ending", _choice_of(frozenset({"kill", "incomplete"}))),
    "error_ending": ("error_ending", _choice_of(frozenset({"error", "failed"}))),
}
# Keys that mean nothing outside some scenarios: a stray one is most likely a typo'd scenario.
_SCENARIO_ONLY_KEYS: Final = {
    "category": frozenset({"content_filter", "prompt_filter"}),
    "retry_after_s": frozenset({"rate_limit"}),
    "disconnect_after": frozenset({"disconnect"}),
    "filter_ending": frozenset({"content_filter"}),
    "error_ending": frozenset({"error_event"}),
}


def parse_options(raw: str | None) -> Options:
    """The header's options; a 400 naming the key for anything it cannot honour."""
    if not raw:
        return Options()
    given: dict[str, Any] = {}  # header key -> parsed value
    for part in re.split(r"[;,]", raw):
        if not part.strip():
            continue
        key, text = _split_pair(part)
        if key in given:
            raise bad_control(key, "given twice")
        given[key] = _parse_value(key, text)
    options = Options(**{_KEYS[key][0]: value for key, value in given.items()})
    for key, scenarios in _SCENARIO_ONLY_KEYS.items():
        if key in given and options.scenario not in scenarios:
            raise bad_control(key, f"only applies to scenario={'|'.join(sorted(scenarios))}")
    return options


def _split_pair(part: str) -> tuple[str, str]:
    key, sep, text = (s.strip() for s in part.partition("="))
    key = key.lower()
    if not sep:
        raise bad_control(key, "expected key=value")
    if key not in _KEYS:
        raise bad_control(key, f"unknown key (known: {', '.join(_KEYS)})")
    return key, text


def _parse_value(key: str, text: str) -> Any:
    try:
        return _KEYS[key][1](text)
    except ValueError as exc:
        raise bad_control(key, str(exc)) from None


def require_scenario(options: Options, allowed: frozenset[str], endpoint: str) -> None:
    """Endpoints other than chat honour only some scenarios; the rest are a 400."""
    if options.scenario not in allowed:
        reason = f"{options.scenario!r} is not supported on {endpoint}"
        raise bad_control("scenario", f"{reason} (use {', '.join(sorted(allowed))})")
