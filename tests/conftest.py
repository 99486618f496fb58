"""Shared fixtures: real servers on 127.0.0.1 with ephemeral ports, never mocks."""

from __future__ import annotations

import dataclasses
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import settings
from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.config import Config, UpstreamConfig
from proxy.runtime.server import start
from proxy.simulator import EventGate, SimulatorConfig, create_simulator_app
from tests.faults.faultkit import ProxyProcess, free_port


def require_binary(name: str, install: str) -> str:
    """The path of `name`; under CI (the CI variable set) a missing binary fails the test,
    elsewhere it skips it. `install` says how to get it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found ({install})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path

# Property tests: locally each run draws new random examples but replays failures saved in
# .hypothesis/; Hypothesis' built-in "ci" profile (loaded when CI is set) fixes the examples so a
# CI run is repeatable. "fresh" draws new examples every run and saves nothing, so repeated runs
# explore: HYPOTHESIS_PROFILE=fresh (or --hypothesis-profile=fresh). See README, "Testing".
settings.register_profile("fresh", derandomize=False, database=None, deadline=None)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

API_VERSION = "2024-10-21"
DEPLOYMENTS = ("gpt-4o", "gpt-4o-mini")
SpawnProxy = Callable[..., Awaitable[ProxyProcess]]
TLS_CERT = Path(__file__).parent / "tls" / "cert.pem"
"""A self-signed certificate for 127.0.0.1 and localhost, valid to 2126 (key: tls/key.pem)."""


def tls_server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_CERT, TLS_CERT.with_name("key.pem"))
    return context


def tls_client_context() -> ssl.SSLContext:
    """Trusts `TLS_CERT` (and nothing else)."""
    return ssl.create_default_context(cafile=str(TLS_CERT))


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


@pytest.fixture
async def spawn_proxy(tmp_path: Path) -> AsyncIterator[SpawnProxy]:
    """Start `python -m proxy --config FILE` processes; stopped (and killed if need be) after.

    Call with the config text produced by `yaml_config(..., port)` and the `port` in it
    (`port=None` picks a free one and passes it to `config(port)` when config is callable).
    """
    started: list[ProxyProcess] = []

    async def _spawn(config: str | Callable[[int], str], *, env: dict[str, str] | None = None,
                     port: int | None = None, ready: bool = True,
                     ready_path: str = "/healthz") -> ProxyProcess:
        port = port if port is not None else free_port()
        text = config(port) if callable(config) else config
        path = tmp_path / f"proxy-{len(started)}.yaml"
        path.write_text(text)
        process = await ProxyProcess(path, env or {}, port).start()
        started.append(process)
        if ready:
            await process.wait_ready(ready_path)
        return process

    yield _spawn
    for process in reversed(started):
        await process.stop()
