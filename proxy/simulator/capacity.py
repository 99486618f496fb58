"""A simulated resource's quota: requests and tokens per minute, over a sliding minute.

Azure OpenAI counts a deployment's requests and tokens over a rolling window and answers 429
with `retry-after` / `retry-after-ms` once a request would exceed either limit
(docs/routing-wire.md). Here the window is exact: a request fits when the requests and tokens
of the last 60 seconds, plus its own, stay within the limits; otherwise the answer says when
enough of them will have aged out for it to fit. Rejected requests are not counted.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .errors import Rejection

WINDOW_S: Final = 60.0


@dataclass(frozen=True)
class Admission:
    allowed: bool
    wait: float
    """Seconds until the request would fit (0 when allowed)."""
    requests_left: int | None
    tokens_left: int | None


class Capacity:
    """`rpm` requests and `tpm` tokens per sliding minute (None: that one is unlimited)."""

    def __init__(self, rpm: int | None, tpm: int | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._taken: collections.deque[tuple[float, int]] = collections.deque()
        self._tokens = 0

    def take(self, tokens: int) -> Admission:
        now = self._clock()
        self._expire(now)
        wait = self._wait(now, tokens)
        if wait > 0:
            return Admission(False, wait, *self._left())
        self._taken.append((now, tokens))
        self._tokens += tokens
        return Admission(True, 0.0, *self._left())

    def left(self) -> tuple[int | None, int | None]:
        self._expire(self._clock())
        return self._left()

    def _left(self) -> tuple[int | None, int | None]:
        requests = None if self.rpm is None else max(self.rpm - len(self._taken), 0)
        tokens = None if self.tpm is None else max(self.tpm - self._tokens, 0)
        return requests, tokens

    def _expire(self, now: float) -> None:
        while self._taken and self._taken[0][0] <= now - WINDOW_S:
            self._tokens -= self._taken.popleft()[1]

    def _wait(self, now: float, tokens: int) -> float:
        """When the oldest entries that must age out for this request to fit have done so."""
        must_go = 0
        if self.rpm is not None:
            must_go = max(must_go, len(self._taken) + 1 - self.rpm)
        if self.tpm is not None:
            if tokens > self.tpm:
                return WINDOW_S  # never fits; Azure too asks such a caller to wait
            excess, freed = self._tokens + tokens - self.tpm, 0
            while excess > 0 and freed < len(self._taken):
                excess -= self._taken[freed][1]
                freed += 1
            must_go = max(must_go, freed)
        if must_go <= 0:
            return 0.0
        return max(self._taken[must_go - 1][0] + WINDOW_S - now, 0.001)


def quota_exceeded(deployment: str, admission: Admission) -> Rejection:
    """Azure's 429 for a full quota, with the honest wait and what is left."""
    seconds = math.ceil(admission.wait)
    message = (
        "Requests to the deployment have exceeded the rate limit of your current pricing "
        f"tier. Please retry after {seconds} seconds."
    )
    headers = {"retry-after": str(seconds),
               "retry-after-ms": str(math.ceil(admission.wait * 1000))}
    return Rejection(429, {"code": "429", "message": message}, deployment=deployment,
                     headers=headers, tokens_left=admission.tokens_left)
