"""Azure's rate-limit headers (docs/chat-wire.md §8.2, §9), read into numbers."""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime

from multidict import CIMultiDictProxy


def remaining(headers: CIMultiDictProxy[str]) -> dict[str, int]:
    """`x-ratelimit-remaining-{requests,tokens}` as numbers; malformed values are ignored."""
    found: dict[str, int] = {}
    for resource in ("requests", "tokens"):
        value = headers.get(f"x-ratelimit-remaining-{resource}", "").strip()
        if value.isdigit():
            found[resource] = int(value)
    return found


def retry_after(headers: CIMultiDictProxy[str], now: float | None = None) -> float | None:
    """Seconds to wait, preferring `retry-after-ms` as openai-python does; `retry-after` may
    be seconds or an HTTP date (docs/routing-wire.md)."""
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
