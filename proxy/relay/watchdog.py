"""One timer for the upstream deadlines of every request, instead of timer handles per request.

Each request guards its upstream twice: response headers must come within `timeouts.response`,
and body pieces must keep coming within `timeouts.idle`. These are the only read deadlines
(the upstream client, `proxy.upstream_client`, has none of its own). A timer handle per guard
costs a heap push and a cancel per request, a measurable share of the proxy's CPU per
non-stream request under load (bench/README.md, "Measurements behind design choices"). Here a
guard is a set entry, and one ticker walks the armed guards a few times per timeout: a guard
fires within one tick after its deadline. Firing cancels the request's task; the code awaiting
the upstream turns that into a timeout with `expired()`.
"""

from __future__ import annotations

import asyncio

_MIN_TICK = 0.01
_MAX_TICK = 1.0
_TICKS_PER_TIMEOUT = 10


def tick_for(*timeouts: float) -> float:
    """A tick short enough that every timeout fires within a tenth of itself (max 1 s)."""
    return min(_MAX_TICK, max(_MIN_TICK, min(timeouts) / _TICKS_PER_TIMEOUT))


class Watch:
    """The guards of one request. `pieces` and `writing` are bumped by the relay loop."""

    __slots__ = ("_cancelling", "_deadline", "_dog", "_idle", "_quiet_since", "_seen", "_task",
                 "fired", "pieces", "writing")

    def __init__(self, dog: Watchdog) -> None:
        self._dog = dog
        self._task = asyncio.current_task()
        self._deadline = 0.0
        self._idle = 0.0
        self._quiet_since = 0.0
        self._seen = 0
        self._cancelling = 0
        self.fired = False
        self.pieces = 0
        self.writing = False

    def expect_response(self, timeout: float) -> None:
        """Until `clear()`: fire if `timeout` seconds pass."""
        self._arm()
        self._deadline = self._dog.now() + timeout
        self._idle = 0.0

    def expect_pieces(self, idle: float) -> None:
        """Until `clear()`: fire if `idle` seconds pass with no piece and no write under way."""
        self._arm()
        self._deadline = 0.0
        self._idle = idle
        self._quiet_since = self._dog.now()
        self._seen = self.pieces

    def clear(self) -> None:
        self._dog.watches.discard(self)

    def expired(self) -> bool:
        """True if the cancellation being handled is ours alone (it is then taken back); one
        from elsewhere (the client left, shutdown) wins over the guard."""
        if not self.fired or self._task is None:
            return False
        return self._task.uncancel() <= self._cancelling

    def _arm(self) -> None:
        self.fired = False
        # Cancellations already requested are not ours (asyncio.timeout's bookkeeping).
        self._cancelling = self._task.cancelling() if self._task is not None else 0
        self._dog.watches.add(self)

    def fire_if_due(self, now: float) -> bool:
        """Called by the ticker: if a guard ran out, cancel the task and return True."""
        if self._deadline:
            due = now >= self._deadline
        elif self.writing or self.pieces != self._seen:
            self._seen, self._quiet_since = self.pieces, now
            due = False
        else:
            due = now - self._quiet_since >= self._idle
        if due:
            self.fired = True
            if self._task is not None:
                self._task.cancel()
        return due


class Watchdog:
    """Ticks every `tick` seconds while started, checking every armed `Watch`."""

    def __init__(self, tick: float) -> None:
        self.watches: set[Watch] = set()
        self._tick = tick
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(self._tick, self._run)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def now(self) -> float:
        assert self._loop is not None, "the watchdog was not started"
        return self._loop.time()

    def watch(self) -> Watch:
        return Watch(self)

    def _run(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for watch in [w for w in self.watches if w.fire_if_due(now)]:
            self.watches.discard(watch)
        self._handle = self._loop.call_later(self._tick, self._run)
