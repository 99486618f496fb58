"""A load generator that sends a realistic mix of chat completions through the proxy.

`aoai-stream-proxy loadgen --target http://127.0.0.1:8080 --duration 60 --concurrency 4`

It is meant for the simulated upstream (`aoai-stream-proxy simulate`): each request picks the
simulator's behaviour with an `x-simulator: key=value; ...` header, so one run fills every panel
of the dashboard: streams and non-streams, long streams, tool calls, `length` finishes, output
and prompt content filtering, 429s, 500s, upstream drops and mid-stream error events, unknown
deployments, clients that hang up mid-stream, and streams with `stream_options.include_usage`.
Against a real Azure resource the header is ignored and every request is an ordinary (billed)
completion. The mix itself is `proxy.traffic.mix`.

A run ends at `duration` seconds or after `max_requests` requests, whichever comes first;
requests still in flight at the deadline are cancelled. No failed request stops the run: every
outcome, transport errors included, is counted in the returned `LoadgenReport`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from proxy.observe.framing import Framer
from proxy.traffic.mix import PlannedRequest, RequestPlanner

__all__ = [
    "LoadgenReport",
    "add_arguments",
    "main",
    "run_loadgen",
]

log = logging.getLogger("aoai_stream_proxy.loadgen")

PROGRESS_EVERY = 60.0
"""Seconds between progress log lines of a run that is not `quiet`."""

@dataclass
class LoadgenReport:
    """What a run sent and what came back."""

    sent: int = 0
    """Requests started."""
    by_scenario: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    """HTTP status codes received."""
    errors: Counter[str] = field(default_factory=Counter)
    """Requests that failed, by exception class: before a status arrived, or mid-body (these
    also count in by_status)."""
    streams: int = 0
    """Requests sent with `stream: true`."""
    aborted: int = 0
    """Streams this generator hung up on deliberately (client-abort scenario)."""
    cancelled: int = 0
    """Requests still in flight when the run ended."""
    elapsed: float = 0.0

    def summary(self) -> str:
        """One line for humans and logs."""
        rate = self.sent / self.elapsed if self.elapsed > 0 else 0.0
        statuses = " ".join(f"{code}={n}" for code, n in sorted(self.by_status.items()))
        errors = " ".join(f"{name}={n}" for name, n in sorted(self.errors.items()))
        return (
            f"loadgen: {self.sent} requests in {self.elapsed:.1f}s ({rate:.1f}/s); "
            f"status {statuses or '-'}; streams {self.streams} (aborted {self.aborted}); "
            f"errors {errors or '-'}; cancelled {self.cancelled}"
        )


# -------------------------------------------------------------------------------------------
# Running
# -------------------------------------------------------------------------------------------


class _Run:
    """State shared by the workers of one run."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        target: str,
        api_key: str,
        planner: RequestPlanner,
        max_requests: int | None,
        think_rng: random.Random,
    ) -> None:
        self.session = session
        self.target = target.rstrip("/")
        self.api_key = api_key
        self.planner = planner
        self.max_requests = max_requests
        self.think_rng = think_rng
        self.report = LoadgenReport()

    def take(self) -> PlannedRequest | None:
        if self.max_requests is not None and self.report.sent >= self.max_requests:
            return None
        plan = self.planner.next()
        self.report.sent += 1
        self.report.by_scenario[plan.scenario] += 1
        self.report.streams += int(plan.stream)
        return plan

    async def worker(self) -> None:
        failures = 0
        while (plan := self.take()) is not None:
            try:
                got_answer = await self.send(plan)
            except asyncio.CancelledError:
                self.report.cancelled += 1
                raise
            # Back off while the target is unreachable (e.g. still starting) instead of
            # spinning; reset as soon as anything answers.
            failures = 0 if got_answer else failures + 1
            pause = min(0.1 * 2**failures, 5.0) if failures else 0.0
            pause += self.think_rng.expovariate(1 / 0.2) * self.planner.time_scale
            await asyncio.sleep(pause)

    async def send(self, plan: PlannedRequest) -> bool:
        """Send one request and read its answer; False if no HTTP status came back."""
        headers = {
            "api-key": self.api_key,
            "x-simulator": plan.simulator_header,
            "user-agent": "aoai-stream-proxy-loadgen",
        }
        status: int | None = None
        try:
            async with self.session.post(
                self.target + plan.path, json=plan.body, headers=headers
            ) as response:
                status = response.status
                self.report.by_status[status] += 1
                if not (plan.stream and status == 200):
                    await response.read()
                    return True
                events = 0
                framer = Framer()  # a blank line may be split across pieces
                async for piece in response.content.iter_any():
                    events += len(framer.feed(piece).spans)
                    if plan.abort_after_events is not None and events >= plan.abort_after_events:
                        # Drop the connection, as a user closing the tab would.
                        response.close()
                        self.report.aborted += 1
                        return True
                return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a load generator outlives any one request
            self.report.errors[type(exc).__name__] += 1
            log.debug("%s %s: %r", plan.scenario, plan.path, exc)
            return status is not None


async def run_loadgen(
    target: str,
    *,
    duration: float,
    concurrency: int,
    api_key: str = "demo-key",
    deployments: Sequence[str] = ("gpt-4o", "gpt-4o-mini"),
    seed: int | None = None,
    max_requests: int | None = None,
    time_scale: float = 1.0,
    quiet: bool = False,
    stop: asyncio.Event | None = None,
) -> LoadgenReport:
    """Send the request mix to `target` (the proxy's base URL) and count what comes back.

    Ends after `duration` seconds, after `max_requests` requests, or when `stop` is set,
    whichever comes first; requests in flight then are cancelled. `time_scale` multiplies
    the simulated delays and think times (tests use 0.05 to run fast). Unless `quiet`, a
    progress line is logged every minute.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if duration < 0 or time_scale < 0:
        raise ValueError("duration and time_scale must not be negative")
    loop = asyncio.get_running_loop()
    started = loop.time()
    planner = RequestPlanner(deployments, seed=seed, time_scale=time_scale)
    think_rng = random.Random(None if seed is None else seed + 1)
    # No total timeout: long streams are the point. sock_read bounds a stalled upstream.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        run = _Run(session, target, api_key, planner, max_requests, think_rng)
        workers = [asyncio.create_task(run.worker()) for _ in range(concurrency)]
        # Whichever ends first: every worker ran out of requests, `stop`, or the deadline.
        ends: set[asyncio.Task[Any]] = {asyncio.create_task(asyncio.wait(workers))}
        if stop is not None:
            ends.add(asyncio.create_task(stop.wait()))
        progress = None if quiet else asyncio.create_task(_progress(run.report, started))
        try:
            await asyncio.wait(ends, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        finally:
            others = [*ends, *([progress] if progress is not None else [])]
            for task in (*workers, *others):
                task.cancel()
            results = await asyncio.gather(*workers, *others, return_exceptions=True)
            for result in results[: len(workers)]:
                if isinstance(result, Exception):
                    log.error("loadgen worker failed: %r", result)
            run.report.elapsed = loop.time() - started
    return run.report


async def _progress(report: LoadgenReport, started: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        report.elapsed = loop.time() - started
        log.info("%s", report.summary())


# -------------------------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError("must be a number >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `aoai-stream-proxy loadgen`."""
    parser.add_argument(
        "--target", required=True, help="base URL of the proxy, e.g. http://127.0.0.1:8080"
    )
    parser.add_argument(
        "--duration",
        type=_non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="stop after this many seconds (default 60)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        help="requests in flight at once (default 4)",
    )
    parser.add_argument(
        "--max-requests",
        type=_positive_int,
        default=None,
        metavar="N",
        help="stop after N requests (default: no limit)",
    )
    parser.add_argument("--api-key", default="demo-key", help="sent as api-key (default demo-key)")
    parser.add_argument(
        "--deployment",
        dest="deployments",
        action="append",
        metavar="NAME",
        help="deployment to use (repeatable; default gpt-4o and gpt-4o-mini)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for a repeatable mix")
    parser.add_argument(
        "--time-scale",
        type=_non_negative_float,
        default=1.0,
        metavar="FACTOR",
        help="multiply simulated delays and think times (default 1)",
    )


def main(args: argparse.Namespace) -> int:
    """Run `aoai-stream-proxy loadgen` and print its one-line summary.

    Exit status 1 when requests were sent but not one got an HTTP answer (wrong target).
    """
    report = asyncio.run(_main(args))
    print(report.summary(), flush=True)
    answered = sum(report.by_status.values())
    return 1 if report.sent and not answered else 0


async def _main(args: argparse.Namespace) -> LoadgenReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Stop cleanly on Ctrl-C or `docker stop` so the summary is still printed.
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return await run_loadgen(
        args.target,
        duration=args.duration,
        concurrency=args.concurrency,
        api_key=args.api_key,
        deployments=tuple(args.deployments or ("gpt-4o", "gpt-4o-mini")),
        seed=args.seed,
        max_requests=args.max_requests,
        time_scale=args.time_scale,
        stop=stop,
    )


if __name__ == "__main__":  # pragma: no cover - the CLI goes through proxy.__main__
    parser = argparse.ArgumentParser(prog="loadgen")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
