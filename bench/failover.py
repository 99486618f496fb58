"""`python3 -m bench.failover [--requests N]`: what failing over costs in time to first byte.

Two simulators: `throttled` (`simulate --rpm 1`: after the warm-up request it answers every
request 429, honestly, with a retry-after) and `healthy`. Two proxies in front:

- `one upstream`: only `healthy`;
- `failover`: `throttled` at priority 0, `healthy` at priority 1, with cooldowns off
  (`max_cooldown_seconds: 0`) so that *every* request is sent to `throttled` first, gets its
  429, and is failed over to `healthy`.

Each gets the same bounded load (N streams one after another, then N at 10 concurrent), and
the report is TTFB (first body byte, from the request's start) p50 / p90 / p99 and the
difference; rounds alternate between the two proxies so both see the same machine load. On loopback the throttled upstream answers in well under a millisecond, so the
difference is the proxy's own cost of one failover (a second upstream request before any byte
goes out); in production add the 429's network round trip to the throttled region. With the
default cooldowns only the first request in each retry-after window pays it at all.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

import aiohttp

from .procs import PYTHON, Child, free_port, spawn, wait_listening
from .timed_client import StreamRecord, new_session, simulator_header, stream_once

HEADER = simulator_header(5)
ROUNDS = 5


def _config(path: Path, port: int, upstreams: list[tuple[str, str, int]]) -> Path:
    lines = [f"listen: {{host: 127.0.0.1, port: {port}}}", "upstreams:"]
    lines += [f"  - {{name: {name}, endpoint: '{url}', priority: {priority}, "
              "deployments: [gpt-4o, gpt-4o-mini]}" for name, url, priority in upstreams]
    lines += ["failover: {cooldown_seconds: 0, max_cooldown_seconds: 0}",
              "access_log: false", "shutdown: {grace: 0, drain_timeout: 5}", ""]
    path.write_text("\n".join(lines))
    return path


async def _started(name: str, argv: list[str], port: int, work: Path) -> Child:
    child = spawn(name, argv, cpus=None, log_dir=work)
    await wait_listening(child, port)
    return child


async def _simulator(name: str, work: Path, *extra: str) -> tuple[Child, str]:
    port = free_port()
    argv = [PYTHON, "-m", "proxy", "simulate", "--host", "127.0.0.1", "--port", str(port),
            *extra]
    return await _started(name, argv, port, work), f"http://127.0.0.1:{port}"


async def _proxy(name: str, work: Path, upstreams: list[tuple[str, str, int]]) -> tuple[Child, str]:
    port = free_port()
    config = _config(work / f"{name}.yaml", port, upstreams)
    argv = [PYTHON, "-m", "proxy", "--config", str(config)]
    return await _started(name, argv, port, work), f"http://127.0.0.1:{port}"


async def _measure(session: aiohttp.ClientSession, url: str,
                   requests: int) -> tuple[list[float], list[float]]:
    """TTFB in ms of `requests` sequential streams, and of `requests` at 10 concurrent."""
    for _ in range(20):  # warm: pools open, code paths hot
        await stream_once(session, url, HEADER, StreamRecord())
    records = [StreamRecord() for _ in range(2 * requests)]
    for record in records[:requests]:
        await stream_once(session, url, HEADER, record)
    pending = iter(records[requests:])

    async def worker() -> None:
        for record in pending:
            await stream_once(session, url, HEADER, record)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(10))), timeout=120)
    bad = [r for r in records if not r.ok]
    if bad:
        raise RuntimeError(f"{len(bad)} streams failed, e.g. {bad[0]}")
    ttfb = [(r.first_byte - r.start) * 1000 for r in records if r.first_byte is not None]
    return ttfb[:requests], ttfb[requests:]


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}


async def run(requests: int) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        work = Path(tmp)
        children: list[Child] = []
        try:
            throttled, throttled_url = await _simulator("throttled", work, "--rpm", "1")
            healthy, healthy_url = await _simulator("healthy", work)
            children += [throttled, healthy]
            one, one_url = await _proxy("one", work, [("healthy", healthy_url, 0)])
            both, both_url = await _proxy("failover", work, [("throttled", throttled_url, 0),
                                                             ("healthy", healthy_url, 1)])
            children += [one, both]
            async with new_session() as session:
                # Rounds alternate between the two so both see the same machine load.
                ttfb: dict[str, list[float]] = {}
                for _ in range(ROUNDS):
                    for name, url in (("one upstream", one_url), ("failover", both_url)):
                        alone, concurrent = await _measure(session, url, requests // ROUNDS)
                        ttfb.setdefault(f"{name}, sequential", []).extend(alone)
                        ttfb.setdefault(f"{name}, 10 concurrent", []).extend(concurrent)
                results = {name: _percentiles(values) for name, values in ttfb.items()}
                async with session.get(both_url + "/metrics",
                                       headers={"Accept-Encoding": "identity"}) as response:
                    metrics = await response.text()
        finally:
            for child in reversed(children):
                child.stop()
    failovers = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("aoai_proxy_failovers_total{"))
    return _report(results, failovers, requests)


def _report(results: dict[str, dict[str, float]], failovers: float, requests: int) -> str:
    rows = ["| target | TTFB p50 ms | p90 ms | p99 ms |", "|---|---|---|---|"]
    for name, q in results.items():
        rows.append(f"| {name} | {q['p50']:.2f} | {q['p90']:.2f} | {q['p99']:.2f} |")
    for load in ("sequential", "10 concurrent"):
        base, over = results[f"one upstream, {load}"], results[f"failover, {load}"]
        added = [over[k] - base[k] for k in ("p50", "p90", "p99")]
        rows.append(f"| added by one failover, {load} | "
                    + " | ".join(f"{a:+.2f}" for a in added) + " |")
    rows.append("")
    rows.append(f"{(requests // ROUNDS) * ROUNDS} streams per target and load in {ROUNDS} "
                "alternating rounds (+20 warm-up each); the failover proxy counted "
                f"{failovers:.0f} failovers (429 from `throttled`).")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200,
                        help="streams per phase (sequential, then 10 concurrent)")
    args = parser.parse_args()
    print(asyncio.run(run(max(10, min(args.requests, 2000)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
