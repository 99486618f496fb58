"""CORS through the proxy with a real HTTP client: preflights, streams, the proxy's own errors,
and an upstream that sends CORS headers of its own (or odd streams)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from proxy.config import ClientConfig, CorsConfig, LimitsConfig, TimeoutsConfig
from proxy.simulator import SIM_STATS
from tests.conftest import Running, chat_path
from tests.faults.faultkit import DONE, chunk_event, free_port, total

APP = "https://app.example.com"
EVIL = "https://evil.example.com"
CORS = CorsConfig(allow_origins=(APP,), allow_headers=("x-app-trace",), max_age=321)
STREAM = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
KEY = "proxy-key-of-the-browser-app"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "api-key,content-type,x-stainless-os,x-evil"}

StartProxy = Callable[..., Awaitable[Running]]


def cors_headers(response: aiohttp.ClientResponse) -> dict[str, list[str]]:
    names = {k.lower() for k in response.headers if k.lower().startswith("access-control-")}
    return {n: response.headers.getall(n) for n in sorted(names)}


def assert_cors_for(response: aiohttp.ClientResponse, origin: str) -> None:
    assert response.headers.getall("Access-Control-Allow-Origin") == [origin]
    assert "Origin" in [v.strip() for v in response.headers.get("Vary", "").split(",")]
    exposed = response.headers["Access-Control-Expose-Headers"].split(", ")
    assert "x-ratelimit-remaining-requests" in exposed and "retry-after-ms" in exposed


async def test_preflight_is_answered_by_the_proxy_never_forwarded_nor_counted(
        start_proxy: StartProxy, simulator: Running, http: aiohttp.ClientSession) -> None:
    proxy = await start_proxy(simulator.url, cors=CORS)
    async with http.options(proxy.url + chat_path(), headers=PREFLIGHT) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == APP
        assert response.headers["Access-Control-Allow-Headers"] == \
            "api-key, content-type, x-stainless-os"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Access-Control-Max-Age"] == "321"
    async with http.options(proxy.url + chat_path(), headers={**PREFLIGHT, "Origin": EVIL}) as refused:
        assert refused.status == 403
        assert cors_headers(refused) == {}
    assert list(simulator.app[SIM_STATS].requests) == []
    assert total(proxy.registry, "aoai_proxy_requests_total") == 0


async def test_streams_to_an_allowed_origin_carry_cors_and_others_pass_as_before(
        start_proxy: StartProxy, simulator: Running, http: aiohttp.ClientSession) -> None:
    proxy = await start_proxy(simulator.url, cors=CORS)
    url = proxy.url + chat_path()
    async with http.post(url, json=STREAM, headers={"Origin": APP}) as allowed:
        body = await allowed.read()
        assert allowed.status == 200 and body.endswith(DONE)
        assert_cors_for(allowed, APP)
    async with http.post(url, json=STREAM, headers={"Origin": EVIL}) as other:
        assert other.status == 200 and (await other.read()).endswith(DONE)
        assert cors_headers(other) == {}
    async with http.post(url, json=STREAM) as plain:
        assert plain.status == 200 and cors_headers(plain) == {}
    assert len(simulator.app[SIM_STATS].requests) == 3


async def test_without_cors_configured_a_preflight_is_forwarded_as_before(
        start_proxy: StartProxy, simulator: Running, http: aiohttp.ClientSession) -> None:
    proxy = await start_proxy(simulator.url)
    async with http.options(proxy.url + chat_path(), headers=PREFLIGHT) as response:
        assert cors_headers(response) == {} and "Vary" not in response.headers
    assert [r.method for r in simulator.app[SIM_STATS].requests] == ["OPTIONS"]


async def test_preflight_comes_before_client_auth_and_the_401_is_readable(
        start_proxy: StartProxy, simulator: Running, http: aiohttp.ClientSession) -> None:
    client = ClientConfig(name="browser-app", key_sha256=hashlib.sha256(KEY.encode()).hexdigest())
    proxy = await start_proxy(simulator.url, cors=CORS, require_client_auth=True,
                              clients=(client,), api_key="azure-key")
    async with http.options(proxy.url + chat_path(), headers=PREFLIGHT) as preflight:
        assert preflight.status == 204 and preflight.headers["Access-Control-Allow-Origin"] == APP
    async with http.post(proxy.url + chat_path(), json=STREAM, headers={"Origin": APP}) as denied:
        assert denied.status == 401
        assert_cors_for(denied, APP)
    async with http.post(proxy.url + chat_path(), json=STREAM,
                         headers={"Origin": APP, "api-key": KEY}) as allowed:
        assert allowed.status == 200 and (await allowed.read()).endswith(DONE)
        assert_cors_for(allowed, APP)
    assert [r.method for r in simulator.app[SIM_STATS].requests] == ["POST"]


async def test_the_proxys_own_errors_carry_cors(
        start_proxy: StartProxy, simulator: Running, start_server: Callable[..., Awaitable[Running]],
        http: aiohttp.ClientSession) -> None:
    small = await start_proxy(simulator.url, cors=CORS,
                              limits=LimitsConfig(max_request_body_bytes=64))
    async with http.post(small.url + chat_path(), data=b"x" * 1000,
                         headers={"Origin": APP}) as too_large:
        assert too_large.status == 413
        assert_cors_for(too_large, APP)

    unreachable = await start_proxy(f"http://127.0.0.1:{free_port()}", cors=CORS)
    async with http.post(unreachable.url + chat_path(), json=STREAM,
                         headers={"Origin": APP}) as bad_gateway:
        assert bad_gateway.status == 502
        assert_cors_for(bad_gateway, APP)

    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    slow_app = web.Application()
    slow_app.router.add_post("/{tail:.*}", silent)
    slow = await start_server(slow_app)
    timing_out = await start_proxy(slow.url, cors=CORS,
                                   timeouts=TimeoutsConfig(response=0.2))
    async with http.post(timing_out.url + chat_path(), json=STREAM,
                         headers={"Origin": APP}) as gateway_timeout:
        assert gateway_timeout.status == 504
        assert_cors_for(gateway_timeout, APP)

    limited = await start_proxy(simulator.url, cors=CORS)
    async with http.post(limited.url + chat_path(), json=STREAM,
                         headers={"Origin": APP, "x-simulator": "scenario=rate_limit"}) as r429:
        assert r429.status == 429 and r429.headers["retry-after"]
        assert_cors_for(r429, APP)


ODD_STREAMS: dict[str, list[bytes]] = {
    # Bytes that look like headers, an event split across writes, a huge first event, no
    # [DONE], a body that is not SSE at all: none of it may change the headers the proxy adds.
    "header-lookalike": [b": \r\nAccess-Control-Allow-Origin: https://evil.example.com\r\n\r\n",
                         chunk_event(0), DONE],
    "split-event": [chunk_event(0)[:7], chunk_event(0)[7:], chunk_event(1), DONE],
    "huge-first-event": [chunk_event(0, content="x" * 300_000), DONE],
    "no-done": [chunk_event(0)],
    "not-sse": [b"\x00\xff garbage \n\n\n", b"data: {not json}\n\n"],
}


@pytest.fixture
async def cors_upstream(
        start_server: Callable[[web.Application], Awaitable[Running]]) -> AsyncIterator[Running]:
    """An upstream that sends its own CORS headers (twice) and the stream named in the path."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream",
            "Access-Control-Allow-Origin": "*", "Vary": "Accept-Encoding",
            "Access-Control-Expose-Headers": "*", "x-ratelimit-remaining-requests": "7"})
        response.headers.add("Access-Control-Allow-Origin", EVIL)
        await response.prepare(request)
        for piece in ODD_STREAMS[request.query["odd"]]:
            await response.write(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    yield await start_server(app)


@pytest.mark.parametrize("odd", sorted(ODD_STREAMS))
async def test_upstream_cors_headers_are_replaced_whatever_the_stream_holds(
        start_proxy: StartProxy, cors_upstream: Running, http: aiohttp.ClientSession,
        odd: str) -> None:
    proxy = await start_proxy(cors_upstream.url, cors=CORS)
    url = f"{proxy.url}{chat_path()}&odd={odd}"
    async with http.post(url, json=STREAM, headers={"Origin": APP}) as allowed:
        assert await allowed.read() == b"".join(ODD_STREAMS[odd])
        assert cors_headers(allowed) == {
            "access-control-allow-origin": [APP],
            "access-control-expose-headers": [allowed.headers["Access-Control-Expose-Headers"]]}
        assert_cors_for(allowed, APP)
        assert allowed.headers.getall("Vary") == ["Accept-Encoding, Origin"]
        assert allowed.headers["x-ratelimit-remaining-requests"] == "7"
    async with http.post(url, json=STREAM, headers={"Origin": EVIL}) as refused:
        assert await refused.read() == b"".join(ODD_STREAMS[odd])
        assert cors_headers(refused) == {}
