"""Converters for single numeric config values, shared by `proxy.config` and
`proxy.routing.settings`.

It lives outside both packages because `proxy.config` imports routing's dataclasses: a
converter module inside either would close an import cycle. Each converter returns the typed
value or raises `TypeError` / `ValueError` with the message the user sees after file and key.
"""

from __future__ import annotations

from typing import Any


def kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    # A scalar is clearer quoted ("got 1.5") than named ("got a number"); a mapping or list
    # may be long, so it is named.
    scalar = isinstance(value, int | float | str) and not isinstance(value, bool)
    return repr(value) if scalar else kind(value)


def to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected a whole number, got {_shown(value)}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None


def to_positive_int(value: Any) -> int:
    number = to_int(value)
    if number <= 0:
        raise ValueError(f"expected a positive number, got {number}")
    return number


def to_float(value: Any, expected: str) -> float:
    """A number written as a YAML number or a string; `expected` says what the key wants."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected {expected}, got {_shown(value)}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"expected {expected}, got {value!r}") from None
