"""What `create_app` builds: the resources the proxy app really serves with.

`AppRunner.setup()` runs the app's start-up (its `cleanup_ctx`) without listening anywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from proxy.app import create_app
from proxy.config import Config, UpstreamConfig
from proxy.relay.state import STATE, ProxyState

CONFIG = Config(upstreams=(UpstreamConfig(name="primary", endpoint="http://127.0.0.1:9",
                                          deployments=("gpt-4o",)),), access_log=False)


@pytest.fixture
async def state() -> AsyncIterator[ProxyState]:
    runner = web.AppRunner(create_app(CONFIG))
    await runner.setup()
    try:
        yield runner.app[STATE]
    finally:
        await runner.cleanup()


async def test_the_upstream_session_never_queues_streams_for_a_connection(
        state: ProxyState) -> None:
    # Every concurrent stream needs its own upstream connection: a pool limit would silently
    # queue streams behind each other. (The read path is the serving event loop's, uvloop by
    # default: tests/integration/test_serving_loop.py shows a serving process runs on it.)
    connector = state.session.connector
    assert connector is not None
    assert connector.limit == 0, "streams must never queue for a connection slot"
    assert not state.session.auto_decompress, "what is forwarded must match its headers"
