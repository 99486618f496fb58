"""S1: time to first byte, to first token, and per-event delay; "added" against direct streams
running at the same time.

Two artefacts of the harness would otherwise swamp a 1 ms budget, so S1 avoids them:

- The simulator sleeps `gap` *after* each write, so its lateness accumulates over a stream
  (asyncio wakes a 5 ms sleep ~0.5 ms late: ~100 ms by event 200), by an amount that depends on
  how busy its CPU is. A control group of direct streams, interleaved with the target's, sees
  the same drift; "added" = target − control at the same percentile.
- Fifty requests arriving in the same millisecond queue in the simulator (~0.6 ms of CPU each):
  TTFB would measure that queue. Starts are spread evenly over the first-token delay instead;
  every stream is still open for the whole event phase, so they stream concurrently.
"""

from __future__ import annotations

from .loadgen import StreamRecord, new_session, simulator_header, stream_many
from .measure import Meter, Result, completed, percentiles
from .sizes import Sizes
from .targets import Running


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


def latency(records: list[StreamRecord], first: float, gap: float) -> Result:
    """Percentiles in ms of TTFB, TTFT and per-event delay over the completed streams."""
    good = [r for r in records if r.ok]
    return {
        "ttfb_ms": percentiles([(r.first_byte - r.start) * 1000 for r in good
                                if r.first_byte is not None]),
        "ttft_ms": percentiles([(r.content_times[0] - r.start) * 1000 for r in good
                                if r.content_times]),
        "event_delay_ms": percentiles([(t - r.start - first - i * gap) * 1000
                                       for r in good for i, t in enumerate(r.content_times)]),
    }


def added(mine: Result, control: Result) -> Result:
    return {metric: {p: None if mine[metric][p] is None or control[metric][p] is None
                     else mine[metric][p] - control[metric][p] for p in ("p50", "p99")}
            for metric in ("ttfb_ms", "ttft_ms", "event_delay_ms")}


async def s1_latency(target: Running, sizes: Sizes) -> Result:
    assert target.upstream is not None
    first, gap = sizes.s1_first_token_ms / 1000, sizes.s1_gap_ms / 1000
    header = simulator_header(sizes.s1_chunks, sizes.s1_first_token_ms, sizes.s1_gap_ms)
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
    ours, theirs = latency(mine, first, gap), latency(control, first, gap)
    return {**completed(mine), "control_completed": completed(control)["completed"],
            "control_streams": len(control), **meter.as_dict(), **ours,
            "control": theirs, "added": added(ours, theirs)}
