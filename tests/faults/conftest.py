"""Fault-only fixtures: scripted raw upstreams (`spawn_proxy` is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.faults.faultkit import RawClient, RawUpstream, Script

StartRawUpstream = Callable[[Script], Awaitable[RawUpstream]]


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
