"""Shared fixtures: real servers on 127.0.0.1 with ephemeral ports, never mocks."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.config import Config, UpstreamConfig
from proxy.server import start
from proxy.simulator import EventGate, SimulatorConfig, create_simulator_app

API_VERSION = "2024-10-21"
DEPLOYMENTS = ("gpt-4o", "gpt-4o-mini")


@dataclass
class Running:
    """A server under test: its base URL and its application."""

    url: str
    app: web.Application
    registry: CollectorRegistry | None = None

    def sample(self, name: str, **labels: str) -> float:
        """A metric sample's value from the proxy's registry (0 when the series is absent)."""
        assert self.registry is not None
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[[web.Application], Awaitable[Running]]]:
    runners: list[web.AppRunner] = []

    async def _start(app: web.Application) -> Running:
        runner, port = await start(app, "127.0.0.1", 0)
        runners.append(runner)
        return Running(url=f"http://127.0.0.1:{port}", app=app)

    yield _start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def start_simulator(
    start_server: Callable[[web.Application], Awaitable[Running]],
) -> Callable[..., Awaitable[Running]]:
    async def _start(config: SimulatorConfig | None = None, *,
                     gate: EventGate | None = None) -> Running:
        app = create_simulator_app(config or SimulatorConfig(deployments=DEPLOYMENTS), gate=gate)
        return await start_server(app)

    return _start


@pytest.fixture
async def start_proxy(
    start_server: Callable[[web.Application], Awaitable[Running]],
) -> Callable[..., Awaitable[Running]]:
    async def _start(upstream_url: str, **overrides: Any) -> Running:
        upstream = UpstreamConfig(name="primary", endpoint=upstream_url,
                                  api_key=overrides.pop("api_key", None),
                                  deployments=overrides.pop("deployments", DEPLOYMENTS))
        config = dataclasses.replace(Config(upstreams=(upstream,), access_log=False),
                                     **overrides)
        registry = CollectorRegistry()
        running = await start_server(create_app(config, registry))
        running.registry = registry
        return running

    return _start


@pytest.fixture
async def simulator(start_simulator: Callable[..., Awaitable[Running]]) -> Running:
    return await start_simulator()


@pytest.fixture
async def proxy(start_proxy: Callable[..., Awaitable[Running]], simulator: Running) -> Running:
    return await start_proxy(simulator.url)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def chat_path(deployment: str = "gpt-4o", api_version: str = API_VERSION) -> str:
    return f"/openai/deployments/{deployment}/chat/completions?api-version={api_version}"
