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
from proxy.upstream_client import UpstreamClient

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


async def test_every_upstream_request_goes_through_one_client_to_the_configured_base(
        state: ProxyState) -> None:
    # The client's own behaviour (no pool limit, nothing decompressed, connections reused
    # only when clean) is tests/unit/test_upstream_client.py's; the serving event loop's is
    # tests/integration/test_serving_loop.py's.
    assert isinstance(state.client, UpstreamClient)
    assert state.bases == {"primary": "http://127.0.0.1:9"}
