"""The benchmark's timed client: streams with a timestamp per SSE event, and a non-stream loop.

It runs in the benchmark's own process (pinned next to the simulator) and does as little as
it can per piece: split on the blank line that ends an event, note the time, recognise a
content chunk by its bytes and, in a stamped stream, pick the simulator's send time out of it.

Times are `time.monotonic()`, CLOCK_MONOTONIC: the clock the simulator's `stamp=1` send times
come from (in another process, same machine), so arrival − stamp is a delivery delay.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from proxy.vocabulary import DEFAULT_API_VERSION

CHAT_PATH = f"/openai/deployments/gpt-4o/chat/completions?api-version={DEFAULT_API_VERSION}"
_MESSAGES = [{"role": "user", "content": "Benchmark me."}]
STREAM_BODY = json.dumps({"messages": _MESSAGES, "stream": True}).encode()
PLAIN_BODY = json.dumps({"messages": _MESSAGES}).encode()
_CONTENT = b'"delta":{"content":"'
_DONE = b"data: [DONE]"
_STAMP = b'"obfuscation":"'
_STAMP_OPTION = "; stamp=1"
clock: Callable[[], float] = time.monotonic
"""Seconds of CLOCK_MONOTONIC; must stay the clock of the simulator's stamps (`stamp=1`)."""


def simulator_header(tokens: int, first_token_ms: float = 0, gap_ms: float = 0, *,
                     stamp: bool = False) -> str:
    """`stamp`: every chunk's `obfuscation` is its send time (read into `sent_times`)."""
    header = f"tokens={tokens}; first_token_delay_ms={first_token_ms:g}; token_delay_ms={gap_ms:g}"
    return header + _STAMP_OPTION if stamp else header


def headers(simulator: str) -> dict[str, str]:
    return {"api-key": "bench", "content-type": "application/json", "x-simulator": simulator}


def new_session() -> aiohttp.ClientSession:
    # ssl=False: with `--tls` the direct streams reach the simulator's self-signed certificate
    # (on 127.0.0.1); the targets themselves verify it.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=False), auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=60), trust_env=False)


@dataclass(slots=True)
class StreamRecord:
    """One stream as the client saw it; times are `clock()` values."""

    start: float = 0.0
    status: int = 0
    first_byte: float | None = None
    """The first body byte (the prompt-annotation event)."""
    content_times: list[float] = field(default_factory=list)
    """Arrival of each content chunk (non-empty `delta.content`), in order."""
    sent_times: list[float] = field(default_factory=list)
    """In a stamped stream, the simulator's send time of each content chunk (its
    `obfuscation`, µs of CLOCK_MONOTONIC, as seconds), parallel to `content_times`."""
    events: int = 0
    reads: int = 0
    done: bool = False
    end: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done and self.error is None


class Opened:
    """Counts streams whose first byte arrived; `all` is set when every one has."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.all = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.all.set()


async def stream_once(session: aiohttp.ClientSession, url: str, simulator: str,
                      record: StreamRecord, opened: Opened | None = None) -> None:
    """A stream whose `simulator` header asks for send-time stamps has them read into
    `sent_times`."""
    stamped = _STAMP_OPTION in simulator
    record.start = clock()
    try:
        async with session.post(url + CHAT_PATH, data=STREAM_BODY,
                                headers=headers(simulator)) as response:
            record.status = response.status
            await _read_events(response, record, opened, stamped)
    except (aiohttp.ClientError, TimeoutError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    record.end = clock()


async def _read_events(response: aiohttp.ClientResponse, record: StreamRecord,
                       opened: Opened | None, stamped: bool) -> None:
    tail = b""
    times, sent = record.content_times, record.sent_times
    async for piece in response.content.iter_any():
        now = clock()
        if record.first_byte is None:
            record.first_byte = now
            if opened is not None:
                opened.add()
        record.reads += 1
        events = (tail + piece if tail else piece).split(b"\n\n")
        tail = events.pop()
        record.events += len(events)
        for event in events:
            at = event.find(_CONTENT) + len(_CONTENT)
            if at >= len(_CONTENT) and event[at:at + 1] != b'"':
                times.append(now)
                if stamped:
                    _read_stamp(event, at, sent, record)
            elif event == _DONE:
                record.done = True


def _read_stamp(event: bytes, at: int, sent: list[float], record: StreamRecord) -> None:
    """Append the send time in `event`'s obfuscation (after `at`: the field follows
    `choices`); a chunk without one voids the record, rather than shifting the pairs."""
    start = event.find(_STAMP, at) + len(_STAMP)
    end = event.find(b'"', start) if start >= len(_STAMP) else -1
    digits = event[start:end]
    if end < 0 or not digits.isdigit():
        record.error = record.error or "a content chunk without a send-time stamp"
        return
    sent.append(int(digits) / 1e6)


async def stream_many(session: aiohttp.ClientSession, urls: Sequence[str], simulator: str, *,
                      timeout: float, batch: int = 0, batch_interval: float = 0.0,
                      opened: Opened | None = None) -> list[StreamRecord]:
    """One concurrent stream per entry of `urls` (base URLs), bounded in time; started `batch`
    at a time, `batch_interval` apart, when `batch` > 0.

    Streams still open at `timeout` are cancelled and stay incomplete in the records.
    """
    records = [StreamRecord() for _ in urls]
    tasks: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(timeout):
            for index, (url, record) in enumerate(zip(urls, records, strict=True)):
                if batch and index and index % batch == 0:
                    await asyncio.sleep(batch_interval)
                tasks.append(asyncio.create_task(
                    stream_once(session, url, simulator, record, opened)))
            await asyncio.gather(*tasks)
    except TimeoutError:
        for record in records:
            if not record.ok and record.error is None:
                record.error = "timed out"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return records


@dataclass
class PlainCounts:
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


async def plain_loop(session: aiohttp.ClientSession, url: str, simulator: str,
                     concurrency: int, seconds: float) -> PlainCounts:
    """`concurrency` workers sending non-stream chat completions back to back for `seconds`."""
    counts = PlainCounts()
    deadline = clock() + seconds

    async def worker() -> None:
        while clock() < deadline:
            try:
                async with session.post(url + CHAT_PATH, data=PLAIN_BODY,
                                        headers=headers(simulator)) as response:
                    await response.read()
                    good = response.status == 200
                    reason = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                good, reason = False, type(exc).__name__
            if good:
                counts.ok += 1
            else:
                counts.failed += 1
                counts.errors[reason] = counts.errors.get(reason, 0) + 1

    async with asyncio.timeout(seconds + 30):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts
