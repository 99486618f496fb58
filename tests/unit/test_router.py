"""The routing decision as plain calls: a fake clock, a seeded random source, no HTTP."""

from __future__ import annotations

import math
import random
from email.utils import formatdate

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.config import FailoverConfig, UpstreamConfig
from proxy.relay.ratelimit import retry_after
from proxy.routing.router import Candidate, Failure, Router, mixed_credentials


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def upstream(name: str, *deployments: str, priority: int = 0, weight: float = 1.0,
             api_key: str | None = None,
             aliases: tuple[tuple[str, str], ...] = ()) -> UpstreamConfig:
    return UpstreamConfig(name=name, endpoint="http://127.0.0.1:9", deployments=deployments,
                          priority=priority, weight=weight, api_key=api_key, aliases=aliases)


def router(*upstreams: UpstreamConfig, clock: Clock | None = None, seed: int = 1,
           **failover: object) -> Router:
    return Router.from_upstreams(list(upstreams), FailoverConfig(**failover),  # type: ignore[arg-type]
                                 clock=clock or Clock(), rng=random.Random(seed))


def first_choice(r: Router, deployment: str = "gpt-4o") -> str | None:
    chosen = r.start(deployment).next()
    return None if chosen is None else chosen.upstream


def test_lower_priority_number_is_tried_first_and_the_next_only_on_failure() -> None:
    r = router(upstream("paygo", "gpt-4o", priority=1), upstream("ptu", "gpt-4o", priority=0))
    assert {first_choice(r) for _ in range(50)} == {"ptu"}
    attempts = r.start("gpt-4o")
    first = attempts.next()
    assert first is not None and first.upstream == "ptu"
    attempts.failed(first, Failure("5xx"))
    second = attempts.next()
    assert second is not None and second.upstream == "paygo"
    assert attempts.next() is None  # each candidate once per request


def test_weights_split_requests_within_binomial_bounds() -> None:
    # 3:1 over 3000 draws: the count for `a` is Binomial(3000, 0.75), sd = 23.7; 5 sd = 119.
    r = router(upstream("a", "gpt-4o", weight=3), upstream("b", "gpt-4o", weight=1), seed=7)
    counts = {"a": 0, "b": 0}
    for _ in range(3000):
        counts[first_choice(r) or ""] += 1
    assert abs(counts["a"] - 2250) < 5 * math.sqrt(3000 * 0.75 * 0.25), counts


def test_429_cools_for_its_retry_after_and_the_pair_comes_back_after() -> None:
    clock = Clock()
    r = router(upstream("a", "gpt-4o"), upstream("b", "gpt-4o", priority=1), clock=clock)
    attempts = r.start("gpt-4o")
    a = attempts.next()
    assert a is not None and a.upstream == "a"
    attempts.failed(a, Failure("429", retry_after=30))
    clock.now += 29.9
    assert first_choice(r) == "b"
    clock.now += 0.2
    assert first_choice(r) == "a"


def test_cooldown_only_extends_and_is_capped() -> None:
    clock = Clock()
    r = router(upstream("a", "gpt-4o"), upstream("b", "gpt-4o"), clock=clock,
               max_cooldown_seconds=60, cooldown_seconds=5)
    a = Candidate("a", "gpt-4o")
    r.cool(a, Failure("429", retry_after=40))
    r.cool(a, Failure("429", retry_after=2))  # a later, shorter wait does not bring it back
    r.cool(a, Failure("5xx"))
    assert r.cooldowns.remaining(a.key) == 40
    r.cool(a, Failure("429", retry_after=86400))  # Azure may ask for a day
    assert r.cooldowns.remaining(a.key) == 60
    b = Candidate("b", "gpt-4o")
    r.cool(b, Failure("429"))  # a 429 without retry-after cools like any failure
    assert r.cooldowns.remaining(b.key) == 5


def test_all_cooling_gives_no_candidate_and_the_wait_for_the_first_back() -> None:
    clock = Clock()
    r = router(upstream("a", "gpt-4o"), upstream("b", "gpt-4o"), clock=clock)
    r.cool(Candidate("a", "gpt-4o"), Failure("429", retry_after=12))
    r.cool(Candidate("b", "gpt-4o"), Failure("429", retry_after=7.5))
    attempts = r.start("gpt-4o")
    assert attempts.next() is None
    assert attempts.wait() == 7.5
    assert sorted(r.cooling()) == [("gpt-4o", "a", True), ("gpt-4o", "b", True)]
    clock.now += 8
    assert sorted(r.cooling()) == [("gpt-4o", "a", True), ("gpt-4o", "b", False)]


def test_cooling_priority_zero_sends_traffic_to_priority_one() -> None:
    r = router(upstream("a", "gpt-4o"), upstream("b", "gpt-4o"),
               upstream("c", "gpt-4o", priority=1))
    r.cool(Candidate("a", "gpt-4o"), Failure("5xx"))
    assert {first_choice(r) for _ in range(30)} == {"b"}
    r.cool(Candidate("b", "gpt-4o"), Failure("5xx"))
    assert first_choice(r) == "c"


def test_max_attempts_bounds_a_request() -> None:
    r = router(*(upstream(n, "gpt-4o") for n in "abcd"), max_attempts=2)
    attempts = r.start("gpt-4o")
    for _ in range(2):
        chosen = attempts.next()
        assert chosen is not None
        attempts.failed(chosen, Failure("5xx"))
    assert attempts.next() is None


def test_cooldowns_are_per_upstream_and_deployment() -> None:
    r = router(upstream("a", "gpt-4o", "mini"), upstream("b", "gpt-4o", "mini", priority=1))
    r.cool(Candidate("a", "gpt-4o"), Failure("429", retry_after=30))
    assert first_choice(r, "gpt-4o") == "b"
    assert first_choice(r, "mini") == "a"


def test_one_candidate_or_none_is_forwarded_as_before_routing() -> None:
    r = router(upstream("a", "gpt-4o"), upstream("b", "mini"))
    r.cool(Candidate("a", "gpt-4o"), Failure("429", retry_after=30))
    attempts = r.start("gpt-4o")
    only = attempts.next()
    assert only is not None and only.upstream == "a" and not attempts.routed
    attempts.failed(only, Failure("429", retry_after=30))
    assert attempts.next() is None
    unknown = r.start("not-listed").next()
    assert unknown == Candidate("a", "not-listed")  # the first upstream, the name unchanged
    assert list(r.cooling()) == []  # single-candidate deployments are never routed


def test_aliases_name_the_upstreams_own_deployment() -> None:
    r = router(upstream("a", "gpt-4o"),
               upstream("b", "gpt-4o", priority=1, aliases=(("gpt-4o", "gpt-4o-global"),)))
    attempts = r.start("gpt-4o")
    first = attempts.next()
    assert first is not None
    attempts.failed(first, Failure("5xx"))
    assert attempts.next() == Candidate("b", "gpt-4o-global", 1, 1.0)


def test_statuses_classified_by_on_status() -> None:
    r = router(upstream("a", "gpt-4o"), on_status=(429, 503, 408))
    assert r.classify_status(429, 3.0) == Failure("429", 3.0)
    assert r.classify_status(503, 3.0) == Failure("5xx")
    assert r.classify_status(408, None) == Failure("4xx")
    assert r.classify_status(500, None) is None
    assert r.classify_status(200, None) is None


def test_mixed_keyed_and_keyless_candidates_are_named() -> None:
    ups = [upstream("a", "gpt-4o", "mini", api_key="k"), upstream("b", "gpt-4o"),
           upstream("c", "mini", api_key="k2")]
    assert mixed_credentials(ups) == ["gpt-4o"]


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def test_retry_after_ms_then_seconds_then_http_date() -> None:
    assert retry_after(headers(retry_after_ms="1500", retry_after="9")) == 1.5
    assert retry_after(headers(retry_after="9")) == 9
    now = 1_700_000_000.0
    date = formatdate(now + 42, usegmt=True)
    assert retry_after(headers(retry_after=date), now=now) == 42
    assert retry_after(headers(retry_after="soon")) is None
    assert retry_after(headers(retry_after_ms="-5")) is None
