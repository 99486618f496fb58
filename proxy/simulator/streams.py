"""Streaming a chat completion: the order of its events, their pauses, and writing them.

Every event is one network write, in the order a real deployment sends them: the prompt
annotation, each choice's role chunk, the content chunks interleaved across choices, then
the finish chunks, any annotations, usage and ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

from aiohttp import hdrs, web

from .chunks import DONE, ERROR_EVENT, PROMPT_ANNOTATION, Chunks
from .completion import Completion
from .hooks import EventGate
from .resource import Resource

_SSE_CONTENT_TYPE: Final = "text/event-stream; charset=utf-8"
_YIELD_EVERY: Final = 16  # events written back to back before letting other streams run
_ANNOTATE_EVERY: Final = 5  # content chunks of a choice between async-filter verdicts


class _Drop(enum.Enum):
    """Marks the point in a stream where the simulator cuts the connection."""

    HERE = enum.auto()


Event = bytes | float | _Drop  # bytes: one SSE event; float: seconds to pause
DROP: Final = _Drop.HERE


class _Offsets:
    """Per-choice character positions for async-filter annotations (0 = start of prompt)."""

    def __init__(self, c: Completion) -> None:
        self._base = c.prompt_chars
        self.written = [0] * c.n
        self.checked = [0] * c.n

    def segment(self, index: int) -> tuple[int, int, int]:
        """The text written since the last verdict; marks it checked."""
        start = self._base + self.checked[index]
        self.checked[index] = self.written[index]
        return start, start, self._base + self.written[index]

    def whole(self, index: int) -> tuple[int, int, int]:
        """All output of a choice, as in the annotation that follows the finish chunk."""
        return (
            self._base + self.checked[index],
            self._base,
            self._base + self.written[index],
        )


def _events(c: Completion) -> Iterator[Event]:
    """The whole stream, lazily: 2,000 open streams must not hold their events in memory."""
    chunks = Chunks(c)
    offsets = _Offsets(c)
    annotated = c.async_filter or c.trailing_annotation  # only they need character offsets
    yield PROMPT_ANNOTATION
    if c.first_token_delay > 0:
        yield c.first_token_delay
    for index in range(c.n):
        yield chunks.role(index)
        if c.tool_name is not None:
            yield chunks.tool_call_start(index)
    emitted = 0
    for step in range(c.steps):
        if step and c.token_delay > 0:
            yield c.token_delay
        for index in range(c.n):
            if emitted == c.drop_after:
                yield _Drop.HERE
                return
            yield chunks.piece(index, step)
            emitted += 1
            if annotated:
                offsets.written[index] += len(c.piece(index, step))
            if c.async_filter and (step + 1) % _ANNOTATE_EVERY == 0:
                yield chunks.annotation(index, offsets.segment(index), flagged=False)
    if c.drop_after is not None:
        yield _Drop.HERE
        return
    if c.scenario == "error_event":
        yield ERROR_EVENT
        return
    yield from _ending(c, chunks, offsets)


def _ending(c: Completion, chunks: Chunks, offsets: _Offsets) -> Iterator[Event]:
    flagged = c.finish_reason == "content_filter"
    if c.async_filter and flagged:
        # Async mode has no finish chunk for a filtered choice: the verdict ends it.
        for index in range(c.n):
            finish = '"content_filter"'
            yield chunks.annotation(index, offsets.segment(index), flagged=True, finish=finish)
    else:
        for index in range(c.n):
            yield chunks.finish(index)
        if c.async_filter or c.trailing_annotation:
            for index in range(c.n):
                yield chunks.annotation(index, offsets.whole(index), flagged=flagged)
    if c.include_usage:
        yield chunks.usage()
    if not c.no_done:
        yield DONE


async def _write_events(
    resp: web.StreamResponse,
    events: Iterator[Event],
    gate: EventGate | None,
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool:
    """Write each event with its own write, as Azure does. False if the stream was dropped.

    Pauses are kept on an absolute schedule: each pause moves the next event's due time on
    from the previous due time, not from when the previous write happened. A model generates
    tokens at its own rate whatever the network does, and sleeping the whole pause after each
    write would let every late wake-up (asyncio wakes a 5 ms sleep ~0.5 ms late on a busy
    CPU) add up over the stream. Time an event spends held by ``gate`` or blocked in a write
    counts as lateness too: the events after it catch up. ``clock`` (the loop's by default, the
    one ``sleep`` runs on) and ``sleep`` are what a test replaces to check the schedule.
    """
    now = clock if clock is not None else asyncio.get_running_loop().time
    due = now()
    unyielded = 0
    for event in events:
        if isinstance(event, _Drop):
            return False
        if isinstance(event, float):
            due += event
            # sleep(0) when already late: no wait, but other streams still get to run.
            await sleep(max(0.0, due - now()))
            unyielded = 0
            continue
        if gate is not None:
            await gate.wait()
        await resp.write(event)
        unyielded += 1
        # write() only waits when the socket buffer is full, so a gapless stream would
        # otherwise keep the loop to itself until it ends.
        if unyielded >= _YIELD_EVERY:
            unyielded = 0
            await asyncio.sleep(0)
    return True


def drop_connection(request: web.Request) -> None:
    """Cut the connection mid-answer, as ``scenario=disconnect`` asks."""
    # close() rather than abort(): already written events still reach the peer, and the
    # peer then sees the connection end inside an unterminated chunked body.
    transport = request.transport
    if transport is not None:
        transport.close()


async def stream(
    request: web.Request, c: Completion, resource: Resource, headers: dict[str, str]
) -> web.StreamResponse:
    """Stream ``c`` as SSE, counting how the stream ended in the resource's stats."""
    return await stream_events(request, _events(c), resource, headers)


async def stream_events(
    request: web.Request, events: Iterator[Event], resource: Resource, headers: dict[str, str]
) -> web.StreamResponse:
    """Write ``events`` as one SSE body, with the pacing, gate and stats every stream has."""
    stats = resource.stats
    resp = web.StreamResponse(status=200, headers=headers)
    resp.headers[hdrs.CONTENT_TYPE] = _SSE_CONTENT_TYPE
    resp.enable_chunked_encoding()
    stats.streams_started += 1
    stats.open_streams += 1
    try:
        await resp.prepare(request)
        # Send the headers now, as Azure does, even while a gate holds the first event.
        await resp.write(b"")
        if await _write_events(resp, events, resource.gate):
            await resp.write_eof()
            stats.streams_completed += 1
        else:
            drop_connection(request)
            stats.streams_dropped += 1
    except ConnectionError:  # aiohttp raises ClientConnectionResetError, a subclass
        stats.streams_aborted += 1
    except asyncio.CancelledError:
        stats.streams_aborted += 1
        raise
    finally:
        stats.open_streams -= 1
    return resp
