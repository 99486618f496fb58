"""S1: time to first byte, to first token, and per-event delay; "added" against direct streams
running at the same time.

Per-event delay is how long each content chunk took from the simulator to the client: its
arrival (`time.monotonic()` in the load generator) − the send time the simulator stamped into
it (`x-simulator: stamp=1`, CLOCK_MONOTONIC in the simulator's process, taken just before its
write). It does not depend on when the simulator managed to send the chunk, so neither the
simulator's own lateness nor where in the stream the chunk is enters it. Through a target it
is the direct path's delay plus what the target adds.

"Added" = target − control at the same percentile, where the control group is direct streams
interleaved with the target's in the same run: the direct path's own delay (loopback TCP, the
load generator's reading, which slows as the load generator's CPU gets busier) is then the same
for both.

Fifty requests arriving in the same millisecond would queue in the simulator (~0.6 ms of CPU
each) and TTFB would measure that queue, so starts are spread evenly over the first-token
delay; every stream is still open for the whole event phase, so they stream concurrently.
TTFB and TTFT are measured from the request's start, so they include that start's share of
the simulator's and the target's queueing.
"""

from __future__ import annotations

from .measure import Meter, Result, completed, percentiles
from .sizes import Sizes
from .targets import Running
from .timed_client import StreamRecord, new_session, simulator_header, stream_many


def interleave(streams: int, control: int) -> list[bool]:
    """Start order: `streams` target streams (False) with `control` control streams (True)
    spread evenly among them."""
    every = max(1, streams // control) if control else 0
    order: list[bool] = []
    for index in range(streams):
        order.append(False)
        if every and (index + 1) % every == 0 and sum(order) < control:
            order.append(True)
    return order


def latency(records: list[StreamRecord]) -> Result:
    """Percentiles in ms of TTFB, TTFT and per-event delay (arrival − send stamp) over the
    completed streams."""
    good = [r for r in records if r.ok]
    return {
        "ttfb_ms": percentiles([(r.first_byte - r.start) * 1000 for r in good
                                if r.first_byte is not None]),
        "ttft_ms": percentiles([(r.content_times[0] - r.start) * 1000 for r in good
                                if r.content_times]),
        "event_delay_ms": percentiles([(arrived - sent) * 1000 for r in good
                                       for arrived, sent in zip(r.content_times, r.sent_times,
                                                                strict=True)]),
    }


def added(mine: Result, control: Result) -> Result:
    return {metric: {p: None if mine[metric][p] is None or control[metric][p] is None
                     else mine[metric][p] - control[metric][p] for p in ("p50", "p99")}
            for metric in ("ttfb_ms", "ttft_ms", "event_delay_ms")}


async def s1_latency(target: Running, sizes: Sizes) -> Result:
    assert target.upstream is not None
    first = sizes.s1_first_token_ms / 1000
    header = simulator_header(sizes.s1_chunks, sizes.s1_first_token_ms, sizes.s1_gap_ms,
                              stamp=True)
    order = interleave(sizes.s1_streams, sizes.s1_control)
    urls = [target.upstream.url if is_control else target.url for is_control in order]
    mine: list[StreamRecord] = []
    control: list[StreamRecord] = []
    async with new_session() as session:
        await stream_many(session, urls, simulator_header(5), timeout=30)  # pools, code paths
        with Meter(target) as meter:
            for _ in range(sizes.s1_rounds):
                records = await stream_many(session, urls, header, timeout=60, batch=1,
                                            batch_interval=first / len(urls))
                for is_control, record in zip(order, records, strict=True):
                    (control if is_control else mine).append(record)
    ours, theirs = latency(mine), latency(control)
    chunks, cpu = sum(len(r.content_times) for r in mine), meter.target_cpu
    return {**completed(mine), "control_completed": completed(control)["completed"],
            "control_streams": len(control), **meter.as_dict(), **ours,
            "control": theirs, "added": added(ours, theirs), "chunks": chunks,
            # The control streams go direct: the target's CPU is spent on its own streams only.
            "cpu_ms_per_1k_chunks": None if cpu is None or not chunks else cpu * 1e6 / chunks}
