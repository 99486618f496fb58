"""The built-in page's routes on the proxy's port: `/`, `/_proxy/ui/...`, and what stays Azure's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from proxy.simulator import SIM_STATS
from tests.conftest import Running, chat_path
from tests.faults.faultkit import total

StartProxy = Callable[..., Awaitable[Running]]


async def test_page_and_its_files_are_served_with_a_strict_policy(
        proxy: Running, simulator: Running, http: aiohttp.ClientSession) -> None:
    async with http.get(proxy.url + "/") as page:
        assert page.status == 200 and page.content_type == "text/html"
        html = await page.text()
        policy = page.headers["Content-Security-Policy"]
        etag = page.headers["ETag"]
    assert "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert '<script type="module" src="/_proxy/ui/app.js">' in html
    for name, kind in (("app.js", "text/javascript"), ("sse.js", "text/javascript"),
                       ("wire.js", "text/javascript"), ("chart.js", "text/javascript"),
                       ("style.css", "text/css")):
        async with http.get(f"{proxy.url}/_proxy/ui/{name}") as asset:
            assert asset.status == 200 and asset.content_type == kind, name
            assert (await asset.read()).strip()
    async with http.get(proxy.url + "/", headers={"If-None-Match": etag}) as cached:
        assert cached.status == 304
    async with http.get(proxy.url + "/_proxy/ui/info.json") as info:
        assert await info.json() == {"deployments": [
            {"name": "gpt-4o", "simulated": False}, {"name": "gpt-4o-mini", "simulated": False}]}
    async with http.get(proxy.url + "/_proxy/ui/nothing.js") as missing:
        assert missing.status == 404
    # None of it reached the upstream or the request metrics.
    assert list(simulator.app[SIM_STATS].requests) == []
    assert total(proxy.registry, "aoai_proxy_requests_total") == 0


async def test_built_in_simulator_deployments_are_marked_simulated(
        start_proxy: StartProxy, http: aiohttp.ClientSession) -> None:
    proxy = await start_proxy("simulator", deployments=("gpt-4o",))
    async with http.get(proxy.url + "/_proxy/ui/info.json") as info:
        assert await info.json() == {"deployments": [{"name": "gpt-4o", "simulated": True}]}


async def test_other_methods_on_root_and_azure_paths_are_still_forwarded(
        proxy: Running, simulator: Running, http: aiohttp.ClientSession) -> None:
    async with http.post(proxy.url + "/", data=b"{}") as posted:
        assert posted.status == 404  # the simulator's answer: it was forwarded
    async with http.post(proxy.url + chat_path(), json={"messages": [{"role": "user", "content": "hi"}]}) as chat:
        assert chat.status == 200
    assert [r.method for r in simulator.app[SIM_STATS].requests] == ["POST", "POST"]


async def test_ui_false_forwards_root_as_any_other_path(
        start_proxy: StartProxy, simulator: Running, http: aiohttp.ClientSession) -> None:
    proxy = await start_proxy(simulator.url, ui=False)
    for path in ("/", "/_proxy/ui/app.js"):
        async with http.get(proxy.url + path) as response:
            assert response.status == 404 and "Content-Security-Policy" not in response.headers
    assert [r.path_qs for r in simulator.app[SIM_STATS].requests] == ["/", "/_proxy/ui/app.js"]

