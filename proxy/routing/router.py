"""Which upstream serves a request next, and what an answer means for the ones after it.

Pure: no HTTP, no I/O. The clock and the random source are parameters, so tests drive time and
choice with plain calls. A request's candidates are the upstreams that list its deployment,
lowest priority first; within a priority one is drawn by weight among those not cooling down.
A failure puts its (upstream, deployment) pair in cooldown: for a 429 as long as the answer's
`retry-after-ms` / `retry-after` asked, otherwise `cooldown_seconds`, never more than
`max_cooldown_seconds`. A cooldown only ever extends: a shorter wait asked later never
brings a pair back earlier than an earlier answer said.

State lives in this object, so in each process (see the README on `--workers` and replicas).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from proxy.routing.settings import FailoverConfig

Clock = Callable[[], float]

REASON_429 = "429"
REASON_5XX = "5xx"
REASON_4XX = "4xx"
REASON_CONNECT = "connect"
REASON_TIMEOUT = "timeout"
REASONS = (REASON_429, REASON_5XX, REASON_4XX, REASON_CONNECT, REASON_TIMEOUT)


class Upstream(Protocol):
    """What routing needs to know of a configured upstream (`proxy.config.UpstreamConfig`)."""

    @property
    def name(self) -> str: ...

    @property
    def deployments(self) -> tuple[str, ...]: ...

    @property
    def priority(self) -> int: ...

    @property
    def weight(self) -> float: ...

    @property
    def api_key(self) -> str | None: ...

    def deployment_for(self, name: str) -> str: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    upstream: str
    deployment: str
    """The name this upstream knows the deployment by (an alias's target)."""
    priority: int = 0
    weight: float = 1.0

    @property
    def key(self) -> tuple[str, str]:
        return self.upstream, self.deployment


@dataclass(frozen=True, slots=True)
class Failure:
    """An answer that sends the request on: why, and how long the upstream asked us to wait."""

    reason: str
    retry_after: float | None = None


class Cooldowns:
    """(upstream, deployment) -> until when it is left alone; deadlines only move later."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}

    def extend(self, key: tuple[str, str], seconds: float) -> None:
        until = self._clock() + max(seconds, 0.0)
        if until > self._until.get(key, float("-inf")):
            self._until[key] = until

    def remaining(self, key: tuple[str, str]) -> float:
        """Seconds until `key` is back; 0 when it is not cooling down."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[key]
            return 0.0
        return left


class Router:
    """The routing table of one configuration, and the cooldowns learned from answers."""

    def __init__(self, table: Mapping[str, Sequence[Candidate]], failover: FailoverConfig,
                 default: str, *, clock: Clock = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.table = {d: tuple(sorted(c, key=lambda x: x.priority)) for d, c in table.items()}
        self.failover = failover
        self.default = default
        """The upstream a deployment nobody lists goes to (the first one, as before routing)."""
        self.cooldowns = Cooldowns(clock)
        self.rng = rng if rng is not None else random.Random()

    @classmethod
    def from_upstreams(cls, upstreams: Sequence[Upstream], failover: FailoverConfig, *,
                       clock: Clock = time.monotonic,
                       rng: random.Random | None = None) -> Router:
        return cls(candidate_table(upstreams), failover, upstreams[0].name, clock=clock, rng=rng)

    def start(self, deployment: str | None) -> Attempts:
        """The attempts of one request for `deployment` (the name the client used)."""
        candidates = self.table.get(deployment or "", ())
        if len(candidates) < 2:
            # Nothing to fail over to: forwarded as without routing, never held back by a
            # cooldown (a single 500 must not turn into the proxy refusing for 10 s).
            only = candidates[0] if candidates else Candidate(self.default, deployment or "")
            return Attempts(self, (only,), routed=False)
        return Attempts(self, candidates, routed=True)

    def classify_status(self, status: int, retry_after: float | None) -> Failure | None:
        """The failure an upstream status means, or None when the answer goes to the client."""
        if status not in self.failover.on_status:
            return None
        if status == 429:
            return Failure(REASON_429, retry_after)
        return Failure(REASON_5XX if status >= 500 else REASON_4XX)

    def cool(self, candidate: Candidate, failure: Failure) -> None:
        settings = self.failover
        seconds = settings.cooldown_seconds
        if failure.reason == REASON_429 and failure.retry_after is not None:
            seconds = failure.retry_after
        self.cooldowns.extend(candidate.key, min(seconds, settings.max_cooldown_seconds))

    def cooling(self) -> Iterable[tuple[str, str, bool]]:
        """(client-facing deployment, upstream, cooling down now) for every routed pair."""
        for deployment, candidates in self.table.items():
            if len(candidates) < 2:
                continue
            for c in candidates:
                yield deployment, c.upstream, self.cooldowns.remaining(c.key) > 0


class Attempts:
    """One request's way through its candidates: each is tried at most once."""

    def __init__(self, router: Router, candidates: tuple[Candidate, ...], *,
                 routed: bool) -> None:
        self.router = router
        self.candidates = candidates
        self.routed = routed
        self.tried: list[Candidate] = []

    def next(self) -> Candidate | None:
        """The next upstream to ask, or None: attempts used up, or every one left cooling."""
        if not self.routed:
            if self.tried:
                return None
            self.tried.append(self.candidates[0])
            return self.candidates[0]
        if len(self.tried) >= self.router.failover.max_attempts:
            return None
        remaining = self.router.cooldowns.remaining
        ready = [c for c in self.candidates if c not in self.tried and remaining(c.key) == 0]
        if not ready:
            return None
        best = ready[0].priority  # candidates are sorted by priority
        choice = weighted_choice([c for c in ready if c.priority == best], self.router.rng)
        self.tried.append(choice)
        return choice

    def failed(self, candidate: Candidate, failure: Failure) -> None:
        if self.routed:
            self.router.cool(candidate, failure)

    def wait(self) -> float:
        """Seconds until the first candidate comes back (when `next()` found none ready)."""
        remaining = self.router.cooldowns.remaining
        waits = [remaining(c.key) for c in self.candidates if c not in self.tried]
        return min(waits, default=0.0)


def weighted_choice(options: Sequence[Candidate], rng: random.Random) -> Candidate:
    if len(options) == 1:
        return options[0]
    point = rng.random() * sum(c.weight for c in options)
    for option in options:
        point -= option.weight
        if point < 0:
            return option
    return options[-1]  # float rounding at the very top of the range


def candidate_table(upstreams: Sequence[Upstream]) -> dict[str, list[Candidate]]:
    """Client-facing deployment -> every upstream listing it, in configuration order."""
    table: dict[str, list[Candidate]] = {}
    for u in upstreams:
        for name in u.deployments:
            table.setdefault(name, []).append(
                Candidate(u.name, u.deployment_for(name), u.priority, u.weight))
    return table


def mixed_credentials(upstreams: Sequence[Upstream]) -> list[str]:
    """Deployments whose candidates mix upstreams holding a key with ones that forward the
    client's credentials: a client's resource key works on one resource only."""
    keyed: dict[str, set[bool]] = {}
    for u in upstreams:
        for name in u.deployments:
            keyed.setdefault(name, set()).add(u.api_key is not None)
    return [name for name, kinds in keyed.items() if len(kinds) > 1]
