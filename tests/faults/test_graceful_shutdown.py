"""SIGTERM with a stream in flight, on the proxy as a real process.

`/readyz` turns 503 for `shutdown.grace` while the stream keeps flowing; then the listener
closes (new connections refused); in-flight streams get `shutdown.drain_timeout` to finish
and are cut after it; the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Running, SpawnProxy
from tests.faults.faultkit import (
    CHAT_PATH,
    DONE,
    STREAM_BODY_WITH_USAGE,
    ProxyProcess,
    RawClient,
    free_port,
    now,
    raw_exchange,
    refused,
    request_bytes,
    yaml_config,
)

SLACK = 1.0


async def start(spawn_proxy: SpawnProxy, simulator: Running, *, grace: float, drain: float,
                admin_port: int | None = None) -> ProxyProcess:
    sections: dict[str, object] = {"shutdown": {"grace": grace, "drain_timeout": drain},
                                   "access_log": False}
    if admin_port is not None:
        sections["admin"] = {"host": "127.0.0.1", "port": admin_port}

    def config(port: int) -> str:
        return yaml_config([{"name": "primary", "endpoint": simulator.url,
                             "deployments": ["gpt-4o"]}], port, **sections)

    process = await spawn_proxy(config, ready=False)
    await process.wait_ready("/readyz", port=admin_port)
    return process


async def open_stream(port: int, tokens: int, delay_ms: int) -> RawClient:
    client = await RawClient.connect(port)
    await client.send(request_bytes("POST", CHAT_PATH, body=STREAM_BODY_WITH_USAGE, headers=[
        ("Content-Type", "application/json"), ("api-key", "k"),
        ("x-simulator", f"tokens={tokens}; token_delay_ms={delay_ms}")]))
    assert await client.read_until(lambda r: b'"content"' in r.body, timeout=10)
    return client


async def readyz(port: int) -> int | None:
    client = await raw_exchange(port, request_bytes("GET", "/readyz"), timeout=3)
    return client.response.status


async def eventually_not_ready(port: int, timeout: float) -> int | None:
    """/readyz's status once it says 503, or its last answer at `timeout`: the signal is
    handled by the proxy's loop, which may not have run yet when the test asks first."""
    deadline = now() + timeout
    while (status := await readyz(port)) != 503 and now() < deadline:
        await asyncio.sleep(0.02)
    return status


async def eventually_refused(port: int, timeout: float) -> bool:
    deadline = now() + timeout
    while not await refused(port):
        if now() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.parametrize("with_admin", [False, True], ids=["same-port", "admin-port"])
async def test_sigterm_drains_an_in_flight_stream_then_exits_0(
        with_admin: bool, spawn_proxy: SpawnProxy,
        start_simulator: Callable[..., Awaitable[Running]]) -> None:
    grace, drain = 1.5, 6.0
    simulator = await start_simulator()
    admin_port = free_port() if with_admin else None
    process = await start(spawn_proxy, simulator, grace=grace, drain=drain,
                          admin_port=admin_port)
    health_port = admin_port if admin_port is not None else process.port
    stream = await open_stream(process.port, tokens=50, delay_ms=60)  # ~3 s of tokens

    signalled = now()  # before the signal: the proxy's clocks start after this
    process.send_signal(signal.SIGTERM)
    assert await eventually_not_ready(health_port, grace / 2) == 503, (
        "readyz must turn 503 during the grace period")
    received = len(stream.response.body)
    await stream.read_until(lambda r: False, timeout=grace * 0.6)
    assert len(stream.response.body) > received, "the stream stopped during the grace period"
    assert not stream.eof
    assert now() - signalled < grace, "the grace period ended before the checks (raise it)"

    assert await eventually_refused(process.port, timeout=grace + SLACK), (
        "new connections still accepted after the grace")
    assert now() - signalled >= grace, "the listener closed before the grace period ended"
    if admin_port is not None and not await refused(admin_port):
        # The admin listener may keep answering while the proxy drains, but never "ready".
        assert await readyz(admin_port) == 503

    assert await stream.read_to_end(grace + drain - (now() - signalled) + SLACK)
    assert stream.response.complete, "the in-flight stream was cut before drain_timeout"
    assert bytes(stream.response.body).endswith(DONE)
    await stream.aclose()
    code = await process.wait_exit(max(grace + drain + 2 * SLACK - (now() - signalled), 0.5))
    assert code == 0, process.output()


async def test_a_stream_longer_than_the_drain_timeout_is_cut_at_it(
        spawn_proxy: SpawnProxy, start_simulator: Callable[..., Awaitable[Running]]) -> None:
    grace, drain = 0.5, 1.5
    simulator = await start_simulator()
    process = await start(spawn_proxy, simulator, grace=grace, drain=drain)
    stream = await open_stream(process.port, tokens=300, delay_ms=50)  # ~15 s of tokens

    signalled = now()  # before the signal: the proxy's clocks start after this
    process.send_signal(signal.SIGTERM)
    assert await stream.read_to_end(grace + drain + 3 * SLACK)
    ended = (stream.eof_at or now()) - signalled
    assert stream.eof and not stream.response.complete, "the long stream was not cut"
    assert DONE not in stream.response.body
    assert grace + drain <= ended <= grace + drain + SLACK, (
        f"cut {ended:.2f} s after SIGTERM; expected grace + drain_timeout = {grace + drain} s")
    await stream.aclose()
    code = await process.wait_exit(2 * SLACK)
    assert code == 0, process.output()


async def test_a_second_signal_skips_the_grace(
        spawn_proxy: SpawnProxy, start_simulator: Callable[..., Awaitable[Running]]) -> None:
    simulator = await start_simulator()
    process = await start(spawn_proxy, simulator, grace=30.0, drain=2.0)
    process.send_signal(signal.SIGTERM)
    assert await eventually_not_ready(process.port, 10) == 503
    process.send_signal(signal.SIGTERM)
    signalled = now()
    code = await process.wait_exit(2 + 2 * SLACK)
    assert code == 0, process.output()
    assert now() - signalled < 2 + 2 * SLACK
