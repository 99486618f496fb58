"""What `create_app` builds: the resources the proxy app really serves with.

`AppRunner.setup()` runs the app's start-up (its `cleanup_ctx`) without listening anywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from proxy.app import create_app
from proxy.config import Config, UpstreamConfig
from proxy.relay import receive_buffer
from proxy.relay.handler import STATE, ProxyState

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


async def test_the_upstream_session_reads_through_the_proxy_s_own_read_path(
        state: ProxyState) -> None:
    # The read path the app claims (bench/README.md): upstream sockets read into one reused
    # buffer, through `receive_buffer.UpstreamProtocol`. If the read path changes, this is the
    # one place that names what the app's session must then use.
    connector = state.session.connector
    assert connector is not None
    assert connector.limit == 0, "streams must never queue for a connection slot"
    protocol = connector._factory()  # what aiohttp builds for each new upstream connection
    assert isinstance(protocol, receive_buffer.UpstreamProtocol), (
        f"the app's upstream connections read through {type(protocol).__name__}")
