"""The simulator's quota over a sliding minute, with a fake clock."""

from __future__ import annotations

from proxy.simulator.capacity import Capacity, quota_exceeded


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_slide_and_the_wait_is_when_the_oldest_ages_out() -> None:
    clock = Clock()
    quota = Capacity(rpm=3, tpm=None, clock=clock)
    for step in (0, 10, 20):
        clock.now = 100 + step
        assert quota.take(1).allowed
    clock.now = 130
    refused = quota.take(1)
    assert not refused.allowed and refused.wait == 30  # the t=100 request leaves at 160
    assert refused.requests_left == 0 and refused.tokens_left is None
    clock.now = 160
    admitted = quota.take(1)
    assert admitted.allowed and admitted.requests_left == 0
    assert quota.left() == (0, None)
    clock.now = 170.5
    assert quota.left() == (1, None)


def test_tokens_per_minute_count_what_is_taken_and_not_what_is_refused() -> None:
    clock = Clock()
    quota = Capacity(rpm=None, tpm=100, clock=clock)
    assert quota.take(60).tokens_left == 40
    clock.now += 5
    assert quota.take(30).tokens_left == 10
    clock.now += 5
    refused = quota.take(50)  # needs the first 60 gone: at 160, 50 s from now
    assert not refused.allowed and refused.wait == 50 and refused.tokens_left == 10
    assert quota.left() == (None, 10)  # the refused request took nothing
    assert quota.take(200).wait == 60  # larger than the whole quota: never fits


def test_the_429_carries_an_honest_wait() -> None:
    clock = Clock()
    quota = Capacity(rpm=1, tpm=None, clock=clock)
    quota.take(1)
    clock.now += 12.3456
    rejection = quota_exceeded("gpt-4o", quota.take(1))
    assert rejection.status == 429 and rejection.body["error"]["code"] == "429"
    assert rejection.headers == {"retry-after": "48", "retry-after-ms": "47655"}
    assert rejection.deployment == "gpt-4o"
