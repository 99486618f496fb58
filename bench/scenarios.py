"""S1-S4: what each scenario sends to one target and what it measures there.

Each scenario gets a freshly started target (and simulator), warms it up so connection pools
exist, as in production, then measures. Times are in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp

from .latency import s1_latency
from .measure import Meter, Result, completed
from .sizes import Sizes
from .targets import Running
from .timed_client import (
    Opened,
    StreamRecord,
    new_session,
    plain_loop,
    simulator_header,
    stream_many,
)


async def _warm(target: Running, session: aiohttp.ClientSession, concurrency: int) -> None:
    """Short streams at the scenario's concurrency: pools and code paths are warm."""
    await stream_many(session, [target.url] * concurrency, simulator_header(5), timeout=30)


async def s2_throughput(target: Running, sizes: Sizes) -> Result:
    header = simulator_header(sizes.s2_chunks)
    records: list[StreamRecord] = []
    per_round: list[float] = []
    async with new_session() as session:
        await _warm(target, session, sizes.s2_streams)
        with Meter(target) as meter:
            for _ in range(sizes.s2_rounds):
                with Meter(target) as one:
                    batch = await stream_many(session, [target.url] * sizes.s2_streams, header,
                                              timeout=180)
                records += batch
                if one.target_cpu is not None:
                    per_round.append(one.target_cpu * 1e6 / max(1, _chunks(batch)))
    chunks = _chunks(records)
    events, reads = sum(r.events for r in records), sum(r.reads for r in records)
    cpu = meter.target_cpu
    return {
        **completed(records), **meter.as_dict(), "chunks": chunks,
        "chunks_per_s": chunks / meter.wall,
        "cpu_ms_per_1k_chunks": None if cpu is None or not chunks else cpu * 1e6 / chunks,
        "cpu_ms_per_1k_chunks_rounds": per_round,
        "events_per_client_read": events / reads if reads else None,
    }


def _chunks(records: list[StreamRecord]) -> int:
    return sum(len(r.content_times) for r in records)


async def s3_open_streams(target: Running, sizes: Sizes) -> Result:
    header = simulator_header(sizes.s3_chunks, sizes.s3_gap_ms, sizes.s3_gap_ms)
    async with new_session() as session:
        await _warm(target, session, 10)
        await asyncio.sleep(0.5)
        idle = target.rss_bytes()
        opened = Opened(sizes.s3_streams)
        with Meter(target) as meter:
            task = asyncio.create_task(stream_many(
                session, [target.url] * sizes.s3_streams, header, opened=opened,
                timeout=sizes.s3_chunks * sizes.s3_gap_ms / 500 + 60, batch=sizes.s3_batch,
                batch_interval=0.1))
            peak = await _peak_rss_while_open(target, opened,
                                              hold=min(3.0, sizes.s3_gap_ms / 1000))
            records = await task
    per_stream = None
    if idle is not None and peak is not None and opened.all.is_set():
        per_stream = (peak - idle) / sizes.s3_streams / 1024
    return {**completed(records), **meter.as_dict(), "all_open": opened.all.is_set(),
            "idle_rss_mib": _mib(idle), "open_rss_mib": _mib(peak),
            "rss_kib_per_stream": per_stream}


async def _peak_rss_while_open(target: Running, opened: Opened, hold: float) -> int | None:
    """Highest RSS sampled during `hold` seconds after every stream got its first byte."""
    try:
        async with asyncio.timeout(60):
            await opened.all.wait()
    except TimeoutError:
        return target.rss_bytes()
    samples: list[int] = []
    deadline = time.perf_counter() + hold
    while True:
        rss = target.rss_bytes()
        if rss is None:
            return None
        samples.append(rss)
        if time.perf_counter() >= deadline:
            return max(samples)
        await asyncio.sleep(0.25)


def _mib(value: int | None) -> float | None:
    return None if value is None else value / (1 << 20)


async def s4_requests(target: Running, sizes: Sizes) -> Result:
    header = simulator_header(20)
    async with new_session() as session:
        await plain_loop(session, target.url, header, sizes.s4_concurrency, 0.5)
        with Meter(target) as meter:
            counts = await plain_loop(session, target.url, header, sizes.s4_concurrency,
                                      sizes.s4_seconds)
    cpu = meter.target_cpu
    return {
        **meter.as_dict(), "requests": counts.ok + counts.failed, "completed": counts.ok,
        "errors": sorted(counts.errors)[:5], "requests_per_s": counts.ok / meter.wall,
        "cpu_ms_per_1k_requests": None if cpu is None or not counts.ok
        else cpu * 1e6 / counts.ok,
    }


Scenario = Callable[[Running, Sizes], Awaitable[Result]]
SCENARIOS: dict[str, Scenario] = {
    "S1": s1_latency, "S2": s2_throughput, "S3": s3_open_streams, "S4": s4_requests,
}
