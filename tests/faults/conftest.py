"""Fault-only fixtures: scripted raw upstreams and proxies running as real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.faults.faultkit import ProxyProcess, RawClient, RawUpstream, Script, free_port

StartRawUpstream = Callable[[Script], Awaitable[RawUpstream]]
SpawnProxy = Callable[..., Awaitable[ProxyProcess]]


@pytest.fixture(autouse=True)
async def _abort_raw_clients() -> AsyncIterator[None]:
    """Abort the raw client connections a test left open (say, on a failed assertion)."""
    yield
    for client in list(RawClient.live):
        client.abort()
    RawClient.live.clear()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[StartRawUpstream]:
    """Start scripted upstreams; all are closed (connections reset) after the test."""
    started: list[RawUpstream] = []

    async def _start(script: Script) -> RawUpstream:
        upstream = await RawUpstream(script).start()
        started.append(upstream)
        return upstream

    yield _start
    for upstream in reversed(started):
        await upstream.close()


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
