"""The load generator running: its bounds, its tolerance of failures, and what it shows.

(What it plans is tests/unit/test_mix.py.) Real servers on 127.0.0.1: the simulator (and the proxy in front of it) from conftest, plus a
few deliberately broken servers. Delays are scaled down with `time_scale` so a run of 60
requests takes about a second.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from proxy.config import ClientConfig
from proxy.traffic import generator as loadgen
from proxy.traffic.generator import run_loadgen
from proxy.traffic.mix import DECK_SIZE, SCENARIOS
from tests.conftest import Running
from tests.faults.faultkit import eventually

FAST = 0.02
SCENARIO_NAMES = {name for name, _, _ in SCENARIOS}


async def test_run_against_the_simulator(
    start_simulator: Callable[..., Awaitable[Running]],
) -> None:
    simulator = await start_simulator()
    report = await run_loadgen(
        simulator.url,
        duration=60,
        concurrency=8,
        seed=7,
        max_requests=60,
        time_scale=FAST,
        quiet=True,
    )
    assert report.sent == 60
    assert report.elapsed < 30, "a run bounded by max_requests ends by itself"
    assert set(report.by_scenario) == SCENARIO_NAMES
    assert {200, 400, 404, 429, 500} <= set(report.by_status)
    # Every x-simulator header was accepted: the only 400s are the prompt-filter ones.
    assert report.by_status[400] == report.by_scenario["prompt_filter"]
    assert report.by_status[429] == report.by_scenario["rate_limit"]
    assert report.by_status[500] == report.by_scenario["server_error"]
    assert report.by_status[404] == report.by_scenario["unknown_deployment"]
    assert 0 < report.streams < report.sent
    assert report.aborted == report.by_scenario["client_abort"]
    # The simulator drops `disconnect` streams mid-body; nothing else breaks.
    assert sum(report.errors.values()) <= report.by_scenario["disconnect"]
    assert sum(report.by_status.values()) == report.sent
    assert report.cancelled == 0
    summary = report.summary()
    assert summary.startswith("loadgen: 60 requests in ") and "\n" not in summary
    assert "429=" in summary


async def test_through_the_proxy_every_dashboard_metric_gets_data(
    start_simulator: Callable[..., Awaitable[Running]],
    start_proxy: Callable[..., Awaitable[Running]],
) -> None:
    simulator = await start_simulator()
    loadgen_client = ClientConfig(
        name="loadgen", key_sha256=hashlib.sha256(b"demo-key").hexdigest()
    )
    proxy = await start_proxy(simulator.url, clients=(loadgen_client,))
    report = await run_loadgen(
        proxy.url, duration=60, concurrency=8, seed=2, max_requests=2 * DECK_SIZE,
        time_scale=0.05, quiet=True,
    )  # fmt: skip
    assert report.sent == 2 * DECK_SIZE
    assert report.cancelled == 0

    def total(name: str, **labels: str) -> float:
        assert proxy.registry is not None
        return sum(
            sample.value
            for family in proxy.registry.collect()
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    # A request is recorded when the proxy's handler ends, which for a client that hung up is
    # when the proxy notices: wait until every request sent has been recorded.
    assert await eventually(lambda: total("aoai_proxy_requests_total") == report.sent), (
        total("aoai_proxy_requests_total"))

    for status in ("200", "400", "404", "429", "500"):
        assert total("aoai_proxy_requests_total", status_code=status) > 0, status
    assert total("aoai_proxy_requests_total", client="loadgen") == report.sent
    assert total("aoai_proxy_requests_total", deployment="other") > 0
    for stream in ("true", "false"):
        assert total("aoai_proxy_request_duration_seconds_count", stream=stream) > 0
        assert total("aoai_proxy_time_to_first_byte_seconds_count", stream=stream) > 0
    for histogram in (
        "time_to_first_token_seconds",
        "time_per_output_token_seconds",
        "output_tokens_per_second",
        "retry_after_seconds",
    ):
        assert total(f"aoai_proxy_{histogram}_count") > 0, histogram
    for token_type in ("prompt", "completion"):
        assert total("aoai_proxy_tokens_total", token_type=token_type) > 0, token_type
    for reason in ("stop", "length", "tool_calls", "content_filter", "incomplete"):
        assert total("aoai_proxy_finish_reasons_total", finish_reason=reason) > 0, reason
    for stage in ("prompt", "completion"):
        assert total("aoai_proxy_content_filter_events_total", stage=stage) > 0, stage
    assert total("aoai_proxy_rate_limited_total") == report.by_scenario["rate_limit"]
    assert total("aoai_proxy_client_disconnects_total") >= report.aborted > 0
    assert total("aoai_proxy_upstream_errors_total") > 0
    assert total("aoai_proxy_upstream_ratelimit_remaining", resource="tokens") > 0
    assert total("aoai_proxy_in_flight_requests") == 0


ARRIVED = web.AppKey("arrived", list[str])


@pytest.fixture
async def silent_server(
    start_server: Callable[[web.Application], Awaitable[Running]],
) -> AsyncIterator[Running]:
    """Accepts requests and never answers; `app[ARRIVED]` lists the requests that came."""
    released = asyncio.Event()
    arrived: list[str] = []

    async def hang(request: web.Request) -> web.Response:
        arrived.append(request.path)
        await released.wait()
        return web.Response()

    app = web.Application()
    app[ARRIVED] = arrived
    app.router.add_post("/{tail:.*}", hang)
    yield await start_server(app)
    released.set()


async def test_the_deadline_cancels_requests_in_flight(silent_server: Running) -> None:
    report = await run_loadgen(silent_server.url, duration=0.5, concurrency=3, quiet=True)
    assert report.sent == 3
    assert report.cancelled == 3
    assert 0.5 <= report.elapsed < 3


async def test_stop_event_ends_the_run(silent_server: Running) -> None:
    stop = asyncio.Event()
    run = asyncio.create_task(run_loadgen(silent_server.url, duration=60, concurrency=2,
                                          stop=stop, quiet=True))
    assert await eventually(lambda: len(silent_server.app[ARRIVED]) == 2)
    stop.set()
    report = await asyncio.wait_for(run, 30)
    assert report.sent == 2
    assert report.cancelled == 2


async def test_cancelling_the_run_cancels_its_workers(silent_server: Running) -> None:
    task = asyncio.create_task(run_loadgen(silent_server.url, duration=60, concurrency=2))
    assert await eventually(lambda: len(silent_server.app[ARRIVED]) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    leftovers = [t for t in asyncio.all_tasks() if "_Run.worker" in repr(t.get_coro())]
    assert not leftovers


@pytest.fixture
async def garbage_server() -> AsyncIterator[str]:
    """Answers every connection with bytes that are not HTTP, then hangs up."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


async def test_broken_answers_are_counted_not_raised(garbage_server: str) -> None:
    report = await run_loadgen(
        garbage_server, duration=5, concurrency=2, max_requests=6, time_scale=FAST, quiet=True
    )
    assert report.sent == 6
    assert not report.by_status
    assert sum(report.errors.values()) == 6


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_cli_against_an_unreachable_target(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    loadgen.add_arguments(parser)
    args = parser.parse_args(
        ["--target", f"http://127.0.0.1:{closed_port()}", "--duration", "1", "--concurrency", "2"]
    )
    assert loadgen.main(args) == 1, "nothing answered: exit status 1"
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("loadgen: ")
    assert "ClientConnectorError=" in line
