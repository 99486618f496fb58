"""The proxy's `/metrics`, after every kind of outcome, passes `promtool check metrics`.

promtool parses the exposition as Prometheus would and lints it (naming, suffixes, units,
help text). Needs `promtool` (Debian: `apt-get install prometheus`): fails without it when the
CI environment variable is set, skipped otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Running
from tests.e2e.conftest import routed, send_round, wait_until_idle

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def test_exposition_passes_promtool_lint(
        promtool_bin: str, start_simulator: Callable[..., Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    simulator, second = await start_simulator(), await start_simulator()
    proxy = await start_proxy(simulator.url, **routed(simulator, second))
    # Twice, so the labelled series that only exist after a first event have moved on too.
    for _ in range(2):
        statuses = await send_round(http, proxy.url)
        assert {0, 200, 400, 404, 429, 500} <= set(statuses), statuses
    await wait_until_idle(proxy)

    async with http.get(proxy.url + "/metrics",
                        headers={"Accept-Encoding": "identity"}) as response:
        assert response.status == 200
        assert response.headers.get("Content-Encoding") is None
        assert response.content_type == "text/plain"
        body = await response.read()

    # The exposition holds every family the proxy registers, each with samples, so the lint
    # below sees all of them.
    assert proxy.registry is not None
    registered = {family.name for family in proxy.registry.collect()}
    exposed = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert registered <= exposed.keys(), registered - exposed.keys()
    empty = [name for name in registered if not exposed[name].samples]
    assert not empty, f"families without samples after the traffic mix: {empty}"

    lint = await asyncio.create_subprocess_exec(
        promtool_bin, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(30):
            output, _ = await lint.communicate(body)
    finally:
        if lint.returncode is None:
            lint.kill()
            await lint.wait()
    text = output.decode(errors="replace")
    assert lint.returncode == 0, f"promtool check metrics exited {lint.returncode}:\n{text}"
