"""Browser apps on other origins calling the proxy, as Chromium enforces CORS for real."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from playwright.async_api import Page

from proxy.config import ClientConfig, CorsConfig
from proxy.simulator import SIM_STATS
from tests.conftest import Running, chat_path
from tests.integration.browser.conftest import Browser

StartProxy = Callable[..., Awaitable[Running]]
StartServer = Callable[[web.Application], Awaitable[Running]]
KEY = "proxy-key-of-the-browser-app"

# Runs in a page of another origin: a streamed chat completion with fetch and a reader.
STREAM_CHAT = """
async ({url, headers}) => {
  try {
    const response = await fetch(url, {method: "POST", headers, body: JSON.stringify(
      {messages: [{role: "user", content: "hi"}], stream: true})});
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let body = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      body += decoder.decode(value, {stream: true});
    }
    return {status: response.status, body,
            type: response.headers.get("content-type"),
            remaining: response.headers.get("x-ratelimit-remaining-requests")};
  } catch (error) {
    return {failed: String(error)};
  }
}
"""


async def app_origin(start_server: StartServer) -> str:
    """A server on another 127.0.0.1 port serving a blank page: a browser app's origin."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text='<!doctype html><link rel="icon" href="data:,"><p>app</p>',
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    return (await start_server(app)).url


async def open_at(browser: Browser, origin: str) -> Page:
    page = await browser.page()
    await page.goto(origin + "/")
    return page


async def stream_from(page: Page, url: str, headers: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(STREAM_CHAT, {"url": url, "headers": headers})
    return result


async def test_allowed_origin_streams_and_reads_rate_limits_others_fail(
        browser: Browser, start_server: StartServer, start_proxy: StartProxy,
        simulator: Running) -> None:
    allowed, other = await app_origin(start_server), await app_origin(start_server)
    proxy = await start_proxy(simulator.url, cors=CorsConfig(allow_origins=(allowed,)))
    url = proxy.url + chat_path()
    headers = {"api-key": "client-key", "content-type": "application/json",
               "x-stainless-os": "Linux"}
    seen = simulator.app[SIM_STATS].requests

    result = await stream_from(await open_at(browser, allowed), url, headers)
    assert result.get("status") == 200, result
    assert result["type"].startswith("text/event-stream")
    assert result["body"].endswith("data: [DONE]\n\n") and '"delta"' in result["body"]
    assert result["remaining"] is not None and int(result["remaining"]) >= 0
    assert [r.method for r in seen] == ["POST"]
    assert seen[0].headers["api-key"] == "client-key"

    refused = await stream_from(await open_at(browser, other), url, headers)
    assert "failed" in refused and "Failed to fetch" in refused["failed"]
    # The preflight was refused by the proxy; the real request was never sent.
    assert [r.method for r in seen] == ["POST"]
    assert all(r.method != "OPTIONS" for r in seen)
    assert any("CORS policy" in e for e in browser.errors if e.startswith(other))
    assert [e for e in browser.errors if not e.startswith(other)] == []


async def test_preflight_succeeds_before_client_auth_and_the_401_is_readable(
        browser: Browser, start_server: StartServer, start_proxy: StartProxy,
        simulator: Running) -> None:
    origin = await app_origin(start_server)
    client = ClientConfig(name="browser-app", key_sha256=hashlib.sha256(KEY.encode()).hexdigest())
    proxy = await start_proxy(simulator.url, cors=CorsConfig(allow_origins=(origin,)),
                              require_client_auth=True, clients=(client,), api_key="azure-key")
    page = await open_at(browser, origin)
    url = proxy.url + chat_path()

    denied = await stream_from(page, url, {"content-type": "application/json"})
    assert denied.get("status") == 401, denied
    assert denied["type"].startswith("application/json")
    assert '"error"' in denied["body"]
    assert list(simulator.app[SIM_STATS].requests) == []

    allowed = await stream_from(page, url, {"content-type": "application/json", "api-key": KEY})
    assert allowed.get("status") == 200, allowed
    assert allowed["body"].endswith("data: [DONE]\n\n")
    assert [r.method for r in simulator.app[SIM_STATS].requests] == ["POST"]
    assert simulator.app[SIM_STATS].requests[0].headers["api-key"] == "azure-key"
    # The 401 is the page's to handle; Chromium logs the failed status, nothing else.
    assert [e for e in browser.errors if "401" not in e] == []
