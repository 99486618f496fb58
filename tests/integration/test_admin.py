"""Health, readiness and metrics endpoints: on the proxy's port or on a private one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from proxy.app import LIFECYCLE, REGISTRY, create_admin_app
from proxy.config import Config, ListenConfig, MetricsConfig
from proxy.simulator import SIM_STATS
from tests.conftest import Running, chat_path


async def test_health_and_readiness_on_the_proxy_port(
        proxy: Running, http: aiohttp.ClientSession) -> None:
    for path, body in (("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
        async with http.get(proxy.url + path) as response:
            assert response.status == 200 and await response.json() == body


async def test_metrics_bearer_token(simulator: Running, http: aiohttp.ClientSession,
                                    start_proxy: Callable[..., Awaitable[Running]]) -> None:
    proxy = await start_proxy(simulator.url,
                              metrics=MetricsConfig(bearer_token="scrape-token-7"))
    for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                            ({"Authorization": "Bearer scrape-token-7"}, 200)):
        headers = {**headers, "Accept-Encoding": "identity"}
        async with http.get(proxy.url + "/metrics", headers=headers) as response:
            assert response.status == status
            text = await response.text()
            assert "scrape-token-7" not in text
    async with http.get(proxy.url + "/metrics") as response:
        assert (await response.json())["error"]["code"] == "401"


async def test_admin_listener_takes_metrics_off_the_proxy_port(
        simulator: Running, http: aiohttp.ClientSession,
        start_proxy: Callable[..., Awaitable[Running]],
        start_server: Callable[..., Awaitable[Running]]) -> None:
    proxy = await start_proxy(simulator.url, admin=ListenConfig("127.0.0.1", 0))
    admin = await start_server(create_admin_app(
        Config(upstreams=()), proxy.app[REGISTRY], proxy.app[LIFECYCLE]))
    async with http.post(proxy.url + chat_path(),
                         json={"messages": [{"role": "user", "content": "x"}]}) as response:
        assert response.status == 200
    async with http.get(admin.url + "/metrics",
                        headers={"Accept-Encoding": "identity"}) as response:
        assert 'aoai_proxy_requests_total{client="unknown",deployment="gpt-4o"' in \
            await response.text()
    # On the proxy's port, /metrics is now an ordinary path, forwarded like any other.
    seen = len(simulator.app[SIM_STATS].requests)
    async with http.get(proxy.url + "/metrics") as response:
        assert response.status == 404
    assert simulator.app[SIM_STATS].requests[seen].path_qs == "/metrics"
    proxy.app[LIFECYCLE].draining = True
    async with http.get(admin.url + "/readyz") as response:
        assert response.status == 503
