"""The reader that walks parsed YAML: it converts values, substitutes `${VAR}` from the given
environment and records problems (file and key named) instead of stopping at the first.

`proxy.routing.settings` and the section parsers here are handed a `Reader`; it depends on
nothing but the value converters, so no module of the package imports back into another's
caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from proxy.scalars import kind

T = TypeVar("T")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

TOP_LEVEL = "(top level)"


class Reader:
    """Walks the parsed YAML, converting values and recording problems instead of stopping."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.source}: {key}: {message}")

    def mapping(self, key: str, raw: Any, allowed: frozenset[str]) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.problem(key, f"expected a mapping, got {kind(raw)}")
            return None
        for name in raw:
            if name not in allowed:
                hint = ", ".join(sorted(allowed))
                self.problem(f"{_join(key, name)}", f"unknown key (allowed here: {hint})")
        return raw

    def scalar(self, key: str, raw: Any, convert: Callable[[Any], T]) -> T | None:
        value = self.substitute(key, raw)
        if value is None and raw is not None:
            return None
        try:
            return convert(value)
        except (TypeError, ValueError) as exc:
            self.problem(key, str(exc))
            return None

    def substitute(self, key: str, raw: Any) -> Any:
        """Replace `${VAR}` / `${VAR:-default}` inside string values; others pass unchanged."""
        if not isinstance(raw, str):
            return raw
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = self.environ.get(name)
            # As in the shell: `${VAR:-default}` also replaces a variable that is set but empty.
            if value or (value is not None and default is None):
                return value
            if default is not None:
                return default
            missing.append(name)
            return ""

        value = _ENV_REF.sub(replace, raw)
        for name in missing:
            self.problem(key, f"environment variable {name} is not set (write ${{{name}:-}} "
                         "to make it optional)")
        return None if missing else value

    def texts(self, key: str, raw: Any, convert: Callable[[Any], str]) -> tuple[str, ...]:
        if not isinstance(raw, list):
            self.problem(key, f"expected a list, got {kind(raw)}")
            return ()
        values = [self.scalar(f"{key}[{i}]", item, convert) for i, item in enumerate(raw)]
        return tuple(dict.fromkeys(v for v in values if v is not None))


def _join(key: str, name: object) -> str:
    return str(name) if key == TOP_LEVEL else f"{key}.{name}"
