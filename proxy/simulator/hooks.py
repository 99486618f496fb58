"""What lets a test hold the simulator's output and see what it received and did."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDictProxy


class EventGate:
    """Lets a test hold each SSE event until it releases it (no timing needed).

    The simulator awaits :meth:`wait` before writing every SSE event, the first one and
    ``[DONE]`` included, and before sending a non-streaming body.
    """

    def __init__(self) -> None:
        self._permits = asyncio.Semaphore(0)
        self._waiting = 0
        self._open = False

    @property
    def waiting(self) -> int:
        """How many events are being held right now (lets tests wait without sleeping)."""
        return self._waiting

    def release(self, n: int = 1) -> None:
        """Let ``n`` more events through."""
        if n < 0:
            raise ValueError("n must be >= 0")
        for _ in range(n):
            self._permits.release()

    def open(self) -> None:
        """Stop holding anything, now and later."""
        self._open = True
        self.release(self._waiting)

    async def wait(self) -> None:
        if self._open:
            return
        self._waiting += 1
        try:
            await self._permits.acquire()
        finally:
            self._waiting -= 1


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator received it."""

    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    body: bytes


def _request_log() -> collections.deque[RecordedRequest]:
    return collections.deque(maxlen=200)


@dataclass
class SimulatorStats:
    """What the simulator saw and did; tests compare the proxy's view against it."""

    requests: collections.deque[RecordedRequest] = field(default_factory=_request_log)
    """The last 200 requests, oldest first."""
    streams_started: int = 0
    streams_completed: int = 0
    """Streams whose body the simulator ended normally (with or without ``[DONE]``)."""
    streams_aborted: int = 0
    """Streams the peer went away from before they ended."""
    streams_dropped: int = 0
    """Streams the simulator cut on purpose (``scenario=disconnect``)."""
    last_usage: dict[str, Any] | None = None
    """The ``usage`` object of the last completion the simulator started, whether or not the
    stream reported it (``include_usage``) or reached its end."""
    open_streams: int = 0


SIM_STATS: Final = web.AppKey("SIM_STATS", SimulatorStats)
