"""The config keys routing is driven by: upstream priority, weight, deployment aliases, the
`failover` section and the built-in simulator's capacity.

`proxy.config` calls these with its reader, so every problem is still collected with the file
and the key, and reported together with all others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from proxy.scalars import kind, to_float, to_int, to_positive_int

T = TypeVar("T")

FAILOVER_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class FailoverConfig:
    on_status: tuple[int, ...] = FAILOVER_STATUSES
    """Upstream statuses that send a request on to the next candidate (before any byte)."""
    max_attempts: int = 3
    """Upstreams tried per request at most, the first included."""
    cooldown_seconds: float = 10.0
    """How long a failure without `retry-after` keeps an (upstream, deployment) pair aside."""
    max_cooldown_seconds: float = 300.0
    """Cap on any cooldown (Azure may ask for a day)."""


@dataclass(frozen=True)
class SimulatorCapacity:
    """Quota of a built-in simulator upstream, enforced over a sliding minute."""

    rpm: int | None = None
    tpm: int | None = None


class Reader(Protocol):
    def problem(self, key: str, message: str) -> None: ...

    def mapping(self, key: str, raw: Any, allowed: frozenset[str]) -> dict[str, Any] | None: ...

    def scalar(self, key: str, raw: Any, convert: Callable[[Any], T]) -> T | None: ...


UPSTREAM_KEYS = frozenset({"priority", "weight", "simulator"})


def priority(reader: Reader, key: str, section: dict[str, Any]) -> int:
    value = reader.scalar(f"{key}.priority", section.get("priority", 0), _to_priority)
    return 0 if value is None else value


def weight(reader: Reader, key: str, section: dict[str, Any]) -> float:
    value = reader.scalar(f"{key}.weight", section.get("weight", 1), _to_weight)
    return 1.0 if value is None else value


def deployments(reader: Reader, key: str, raw: Any, to_name: Callable[[Any], str]
                ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Client-facing names in order, and (name, the upstream's own deployment) aliases.

    An item is a name, or `{name, deployment}` when this resource calls it differently.
    """
    if not isinstance(raw, list):
        reader.problem(key, f"expected a list of names, got {kind(raw)}")
        return (), ()
    names: list[str] = []
    aliases: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        item_key = f"{key}[{i}]"
        if isinstance(item, dict):
            found = _alias(reader, item_key, item, to_name)
            if found is None:
                continue
            name, target = found
            if target != name:
                aliases.append((name, target))
        else:
            value = reader.scalar(item_key, item, to_name)
            if value is None:
                continue
            name = value
        if name in names:
            reader.problem(item_key, f"{name!r} is listed twice (each client-facing name once "
                           "per upstream)")
            continue
        names.append(name)
    return tuple(names), tuple(a for a in aliases if a[0] in names)


def _alias(reader: Reader, key: str, item: dict[str, Any],
           to_name: Callable[[Any], str]) -> tuple[str, str] | None:
    section = reader.mapping(key, item, frozenset({"name", "deployment"}))
    if section is None:
        return None
    if "name" not in section:
        reader.problem(f"{key}.name", "missing: the deployment name clients use")
        return None
    name = reader.scalar(f"{key}.name", section["name"], to_name)
    target = reader.scalar(f"{key}.deployment", section.get("deployment", section["name"]),
                           to_name)
    if name is None or target is None:
        return None
    return name, target


def simulator_capacity(reader: Reader, key: str, raw: Any,
                       is_simulator: bool) -> SimulatorCapacity | None:
    if raw is None:
        return None
    if not is_simulator:
        reader.problem(key, "only applies to `endpoint: simulator`")
        return None
    section = reader.mapping(key, raw, frozenset({"rpm", "tpm"}))
    if section is None:
        return None
    rpm = reader.scalar(f"{key}.rpm", section.get("rpm"), _to_optional_positive)
    tpm = reader.scalar(f"{key}.tpm", section.get("tpm"), _to_optional_positive)
    return SimulatorCapacity(rpm=rpm, tpm=tpm)


def failover(reader: Reader, raw: Any) -> FailoverConfig:
    default = FailoverConfig()
    section = reader.mapping("failover", raw, frozenset(
        {"on_status", "max_attempts", "cooldown_seconds", "max_cooldown_seconds"}))
    if section is None:
        return default
    statuses = _statuses(reader, section.get("on_status", list(default.on_status)))
    attempts = reader.scalar("failover.max_attempts",
                             section.get("max_attempts", default.max_attempts), _to_attempts)
    cooldown = reader.scalar("failover.cooldown_seconds",
                             section.get("cooldown_seconds", default.cooldown_seconds),
                             _to_seconds)
    longest = reader.scalar("failover.max_cooldown_seconds",
                            section.get("max_cooldown_seconds", default.max_cooldown_seconds),
                            _to_seconds)
    if cooldown is not None and longest is not None and cooldown > longest:
        reader.problem("failover.cooldown_seconds",
                       f"{cooldown:g} is more than max_cooldown_seconds ({longest:g})")
    return FailoverConfig(
        on_status=default.on_status if statuses is None else statuses,
        max_attempts=attempts or default.max_attempts,
        cooldown_seconds=default.cooldown_seconds if cooldown is None else cooldown,
        max_cooldown_seconds=default.max_cooldown_seconds if longest is None else longest)


def _statuses(reader: Reader, raw: Any) -> tuple[int, ...] | None:
    if not isinstance(raw, list):
        reader.problem("failover.on_status", f"expected a list of status codes, got {kind(raw)}")
        return None
    found = [reader.scalar(f"failover.on_status[{i}]", item, _to_failover_status)
             for i, item in enumerate(raw)]
    return tuple(dict.fromkeys(s for s in found if s is not None))


def _to_priority(value: Any) -> int:
    number = to_int(value)
    if number < 0:
        raise ValueError(f"expected a whole number >= 0 (0 is tried first), got {number}")
    return number


def _to_weight(value: Any) -> float:
    number = to_float(value, "a number > 0")
    if not 0 < number < float("inf"):
        raise ValueError(f"expected a number > 0, got {value!r}")
    return number


def _to_attempts(value: Any) -> int:
    number = to_int(value)
    if not 1 <= number <= 10:
        raise ValueError(f"expected 1 to 10 attempts, got {number}")
    return number


def _to_seconds(value: Any) -> float:
    # Unlike a timeout, a cooldown may be 0 (no cooldown), but not endless.
    seconds = to_float(value, "a number of seconds")
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"expected a number of seconds >= 0, got {value!r}")
    return seconds


def _to_failover_status(value: Any) -> int:
    number = to_int(value)
    if not 400 <= number <= 599:
        raise ValueError(f"expected a 4xx or 5xx status code, got {number}")
    return number


def _to_optional_positive(value: Any) -> int | None:
    return None if value is None else to_positive_int(value)
