"""The load generator: its mix, its bounds, its tolerance of failures, and what it shows.

Real servers on 127.0.0.1: the simulator (and the proxy in front of it) from conftest, plus a
few deliberately broken servers. Delays are scaled down with `time_scale` so a run of 60
requests takes about a second.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from proxy.config import ClientConfig
from proxy.traffic import generator as loadgen
from proxy.traffic import mix as traffic_mix
from proxy.traffic.generator import run_loadgen
from proxy.traffic.mix import DECK_SIZE, SCENARIOS, UNKNOWN_DEPLOYMENT, RequestPlanner
from tests.conftest import Running

FAST = 0.02
SCENARIO_NAMES = {name for name, _, _ in SCENARIOS}


def test_every_deck_holds_each_scenario_in_its_weight() -> None:
    planner = RequestPlanner(["gpt-4o", "gpt-4o-mini"], seed=5)
    weights = {name: weight for name, weight, _ in SCENARIOS}
    for _ in range(3):
        deck = [planner.next() for _ in range(DECK_SIZE)]
        assert Counter(p.scenario for p in deck) == weights


def test_the_mix_is_realistic_and_well_formed() -> None:
    planner = RequestPlanner(["gpt-4o", "gpt-4o-mini"], seed=11)
    plans = [planner.next() for _ in range(4 * DECK_SIZE)]
    streams = [p for p in plans if p.stream]
    assert 0.5 < len(streams) / len(plans) < 0.9
    assert any(p.include_usage for p in streams) and any(not p.include_usage for p in streams)
    assert not any(p.include_usage for p in plans if not p.stream)
    assert any(p.simulator.get("filter_mode") == "async" for p in streams)
    assert {p.deployment for p in plans} == {"gpt-4o", "gpt-4o-mini", UNKNOWN_DEPLOYMENT}
    assert all(int(p.simulator["tokens"]) >= 1000 for p in plans if p.scenario == "long_stream")
    for plan in plans:
        assert plan.path.startswith(f"/openai/deployments/{plan.deployment}/chat/completions?")
        assert plan.path.endswith("api-version=2024-10-21")
        assert plan.body["stream"] is plan.stream
        assert plan.simulator["scenario"] in {
            "stop", "length", "tool_calls", "content_filter", "prompt_filter", "rate_limit",
            "server_error", "disconnect", "error_event",
        }  # fmt: skip
        assert (plan.abort_after_events is not None) == (plan.scenario == "client_abort")
        if plan.abort_after_events is not None:
            assert plan.stream
            assert plan.abort_after_events < int(plan.simulator["tokens"])
        pairs = [part.split("=") for part in plan.simulator_header.split("; ")]
        assert all(len(pair) == 2 and pair[0] and pair[1] for pair in pairs)


def test_the_same_seed_plans_the_same_requests() -> None:
    def plans(seed: int) -> list[traffic_mix.PlannedRequest]:
        planner = RequestPlanner(["gpt-4o"], seed=seed)
        return [planner.next() for _ in range(DECK_SIZE)]

    assert plans(3) == plans(3)
    assert plans(3) != plans(4)


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
    await asyncio.sleep(0.2)  # let the proxy notice the last client hang-ups

    def total(name: str, **labels: str) -> float:
        assert proxy.registry is not None
        return sum(
            sample.value
            for family in proxy.registry.collect()
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

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


@pytest.fixture
async def silent_server(
    start_server: Callable[[web.Application], Awaitable[Running]],
) -> AsyncIterator[Running]:
    """Accepts requests and never answers."""
    released = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response()

    app = web.Application()
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
    asyncio.get_running_loop().call_later(0.2, stop.set)
    report = await run_loadgen(silent_server.url, duration=60, concurrency=2, stop=stop, quiet=True)
    assert report.elapsed < 3
    assert report.cancelled == 2


async def test_cancelling_the_run_cancels_its_workers(silent_server: Running) -> None:
    task = asyncio.create_task(run_loadgen(silent_server.url, duration=60, concurrency=2))
    await asyncio.sleep(0.2)
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


def test_cli_defaults_and_validation() -> None:
    parser = argparse.ArgumentParser()
    loadgen.add_arguments(parser)
    args = parser.parse_args(["--target", "http://proxy:8080"])
    assert (args.duration, args.concurrency, args.api_key) == (60.0, 4, "demo-key")
    assert args.deployments is None and args.max_requests is None and args.seed is None
    args = parser.parse_args(
        ["--target", "http://x", "--deployment", "a", "--deployment", "b", "--seed", "3"]
    )
    assert args.deployments == ["a", "b"] and args.seed == 3
    for bad in (["--concurrency", "0"], ["--duration", "-1"], ["--max-requests", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["--target", "http://x", *bad])
