"""`serve()` in this process: what it does around the app, seen from outside.

Run in-process (not as `python -m proxy`) so the test can read the proxy's registry and see
which start-up steps ran; the signal that starts the drain is a real SIGTERM to this process,
caught by the handler `serve()` installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from proxy.config import Config, ListenConfig, ShutdownConfig, UpstreamConfig
from proxy.runtime import server
from tests.conftest import DEPLOYMENTS, Running, chat_path
from tests.faults.faultkit import free_port

STREAM = {"messages": [{"role": "user", "content": "hi"}], "stream": True}


class Serving:
    def __init__(self, config: Config, registry: CollectorRegistry, tuned: list[bool]) -> None:
        self.config = config
        self.registry = registry
        self.tuned = tuned
        """One entry per call of the process tuning."""
        self.url = f"http://{config.listen.host}:{config.listen.port}"
        self.task = asyncio.create_task(server.serve(config, registry=registry))

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
async def serving(start_simulator: Callable[..., Awaitable[Running]],
                  http: aiohttp.ClientSession,
                  monkeypatch: pytest.MonkeyPatch,
                  ) -> AsyncIterator[Callable[..., Awaitable[Serving]]]:
    tuned: list[bool] = []
    # The real tuning freezes this test process's heap; the unit test covers what it sets.
    monkeypatch.setattr(server, "tune_for_serving", lambda: tuned.append(True))
    started: list[Serving] = []

    async def _start(drain: float) -> Serving:
        simulator = await start_simulator()
        config = Config(
            listen=ListenConfig(host="127.0.0.1", port=free_port()),
            upstreams=(UpstreamConfig(name="primary", endpoint=simulator.url,
                                      deployments=DEPLOYMENTS),),
            shutdown=ShutdownConfig(grace=0.0, drain_timeout=drain), access_log=False)
        running = Serving(config, CollectorRegistry(), tuned)
        started.append(running)
        assert await eventually_ready(http, running), "serve() never became ready"
        return running

    yield _start
    for running in started:
        if not running.task.done():
            running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running.task


async def eventually_ready(http: aiohttp.ClientSession, running: Serving) -> bool:
    async def ready() -> bool:
        if running.task.done():
            return False
        try:
            async with http.get(running.url + "/readyz") as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    for _ in range(500):
        if await ready():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_serve_applies_the_process_tuning_once_it_listens(
        serving: Callable[..., Awaitable[Serving]]) -> None:
    running = await serving(drain=1.0)
    assert running.tuned == [True]
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(running.task, 30)


async def test_a_stream_cut_by_the_drain_timeout_is_not_a_client_disconnect(
        serving: Callable[..., Awaitable[Serving]], http: aiohttp.ClientSession) -> None:
    running = await serving(drain=0.2)
    # 2000 tokens 20 ms apart: far longer than the drain timeout, so the drain must cut it.
    headers = {"api-key": "k", "x-simulator": "tokens=2000; token_delay_ms=20"}
    async with http.post(running.url + chat_path(), json=STREAM, headers=headers) as response:
        assert response.status == 200
        while b'"content"' not in await response.content.readuntil(b"\n\n"):
            pass  # the prompt-annotation chunk comes first
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(aiohttp.ClientPayloadError):
            async for _ in response.content.iter_any():
                pass
    await asyncio.wait_for(running.task, 30)
    labels = {"deployment": "gpt-4o", "client": "unknown"}
    assert running.sample("aoai_proxy_requests_total", stream="true", status_code="200",
                          operation="chat_completions", **labels) == 1
    assert running.sample("aoai_proxy_client_disconnects_total", **labels) == 0, (
        "a request the proxy cut at its drain timeout was counted as a client disconnect")
