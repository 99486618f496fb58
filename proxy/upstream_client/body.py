"""The body of one upstream response, handed on piece by piece as the connection reads it.

The connection feeds what it parsed; the relay takes everything buffered at once (one write to
the client per read from the upstream). Reading is paused while more than `HIGH_WATER` bytes
wait (a slow client holds the upstream back, not the proxy's memory) and resumed once the
reader took them. Bytes received before an error are always handed out before it is raised.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

HIGH_WATER = 128 << 10


class Source(Protocol):
    """The connection behind a body: asked to stop and restart reading."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class Body:
    """Async-iterable pieces of one response body (`async for piece in body`)."""

    __slots__ = ("_buffer", "_done", "_error", "_paused", "_size", "_source", "_waiter")

    def __init__(self, source: Source | None) -> None:
        self._source = source
        self._buffer: list[bytes] = []
        self._size = 0
        self._done = False
        self._paused = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- the connection's side

    def extend(self, pieces: list[bytes]) -> None:
        """What one read from the upstream brought (its chunks, in order)."""
        self._buffer += pieces
        for piece in pieces:
            self._size += len(piece)
        if self._size > HIGH_WATER and not self._paused and self._source is not None:
            self._paused = True
            self._source.pause()
        self._wake()

    def finish(self) -> None:
        """Every byte of the body has arrived."""
        self._done = True
        self._source = None  # nothing more to pause: the connection is free of us
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The body broke off: raised to the reader once the bytes before it were read."""
        if self._done:
            return
        self._error = error
        self._source = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -------------------------------------------------------------------- the reader's side

    def is_eof(self) -> bool:
        """The whole body has arrived (some of it may still be buffered)."""
        return self._done

    def at_eof(self) -> bool:
        """The whole body has arrived and been read."""
        return self._done and not self._buffer

    def read_nowait(self) -> bytes:
        """Everything buffered now."""
        buffer = self._buffer
        if not buffer:
            return b""
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            if self._source is not None:
                self._source.resume()
        return data

    async def readany(self) -> bytes:
        """What arrived since the last read, waiting for something if nothing did; b"" at the
        end of the body."""
        while not self._buffer:
            if self._done:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        return self.read_nowait()

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        # readany, inline: this runs once per piece of every stream.
        while not self._buffer:
            if self._done:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            await self._wait()
        return self.read_nowait()
