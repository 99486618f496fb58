"""Drop-in forwarding: what an app sees through the proxy is what it sees from Azure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web

from proxy.simulator import SIM_STATS, EventGate, SimulatorConfig
from tests.conftest import API_VERSION, Running, chat_path

STREAMS = Path(__file__).parents[1] / "data" / "streams"
MESSAGES = [{"role": "user", "content": "What is 4200 + 42?"}]


def azure(url: str, **kwargs: object) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(azure_endpoint=url, api_key="client-key",
                                   api_version=API_VERSION, max_retries=0, **kwargs)  # type: ignore[arg-type]


async def collect(url: str, **kwargs: object) -> tuple[str, list[str]]:
    text, reasons = "", []
    async with azure(url) as client:
        stream = await client.chat.completions.create(  # type: ignore[call-overload]
            model="gpt-4o", messages=MESSAGES, stream=True, **kwargs)
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta is not None and choice.delta.content:
                    text += choice.delta.content
                if choice.finish_reason:
                    reasons.append(choice.finish_reason)
    return text, reasons


@pytest.mark.parametrize("scenario", ["stop", "length", "content_filter", "tool_calls"])
async def test_openai_client_streams_the_same_through_the_proxy(
        simulator: Running, proxy: Running, scenario: str) -> None:
    headers = {"x-simulator": f"scenario={scenario}"}
    direct = await collect(simulator.url, extra_headers=headers)
    proxied = await collect(proxy.url, extra_headers=headers)
    assert proxied == direct
    assert direct[1] == [scenario]


async def test_openai_client_non_stream_the_same_through_the_proxy(
        simulator: Running, proxy: Running) -> None:
    results = []
    for url in (simulator.url, proxy.url):
        async with azure(url) as client:
            completion = await client.chat.completions.create(model="gpt-4o",
                                                              messages=MESSAGES)
        results.append((completion.choices[0].message.content,
                        completion.choices[0].finish_reason, completion.usage))
    assert results[0] == results[1]
    assert results[1][0] and results[1][1] == "stop"


async def test_openai_errors_surface_unchanged(proxy: Running) -> None:
    async with azure(proxy.url) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=True,
                extra_headers={"x-simulator": "scenario=rate_limit"})
        with pytest.raises(openai.BadRequestError) as blocked:
            await client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=True,
                extra_headers={"x-simulator": "scenario=prompt_filter"})
    assert limited.value.status_code == 429
    assert limited.value.response.headers["retry-after"] == "6"
    assert blocked.value.code == "content_filter"


async def test_v1_path_form_through_the_proxy(proxy: Running) -> None:
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/openai/v1/", api_key="k",
                                  max_retries=0) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                      stream=True)
        reasons = [c.finish_reason async for chunk in stream for c in chunk.choices
                   if c.finish_reason]
    assert reasons == ["stop"]
    assert proxy.sample("aoai_proxy_requests_total", deployment="gpt-4o-mini", client="unknown",
                        operation="chat_completions", stream="true", status_code="200") == 1


def recorded_upstream(body: bytes, pieces: list[int],
                      received: list[bytes] | None = None) -> web.Application:
    """An upstream that answers every request with exactly `body`, written in given sizes;
    keeps the request bodies in `received` when given one."""
    async def handler(request: web.Request) -> web.StreamResponse:
        request_body = await request.read()
        if received is not None:
            received.append(request_body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "apim-request-id": "fixed"})
        await response.prepare(request)
        offset = 0
        for size in pieces + [len(body)]:
            if offset >= len(body):
                break
            await response.write(body[offset:offset + size])
            offset += size
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def _byte_identity_cases() -> list[tuple[str, bool]]:
    """Every recorded stream, with and without the proxy asking for usage, except where the
    proxy asked and the stream holds a usage chunk: that chunk is removed (tested elsewhere)."""
    cases = []
    for path in sorted(STREAMS.glob("*.sse")):
        cases.append((path.name, False))
        if b'"usage":{' not in path.read_bytes():
            cases.append((path.name, True))
    return cases


@pytest.mark.parametrize(("name", "inject"), _byte_identity_cases())
async def test_stream_bytes_are_identical_to_the_upstreams(
        name: str, inject: bool, start_server: Callable[[web.Application], Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    body = (STREAMS / name).read_bytes()
    upstream = await start_server(recorded_upstream(body, [1, 7, 100, 3, 4096]))
    proxy = await start_proxy(upstream.url, inject_stream_usage=inject)
    request = {"messages": MESSAGES, "stream": True,
               "stream_options": {"include_usage": True}}
    for url in (upstream.url, proxy.url):
        async with http.post(url + chat_path(), json=request) as response:
            assert response.headers["apim-request-id"] == "fixed"
            assert await response.read() == body


@pytest.mark.parametrize("client_asks_usage", [True, False])
async def test_each_event_reaches_the_client_before_the_next_is_released(
        client_asks_usage: bool, start_simulator: Callable[..., Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    gate = EventGate()
    simulator = await start_simulator(SimulatorConfig(tokens=5), gate=gate)
    proxy = await start_proxy(simulator.url)
    request: dict[str, object] = {"messages": MESSAGES, "stream": True}
    if client_asks_usage:
        request["stream_options"] = {"include_usage": True}
    received = b""
    events = 0
    async with asyncio.timeout(20):
        async with http.post(proxy.url + chat_path(), json=request) as response:
            assert response.headers["X-Accel-Buffering"] == "no"
            assert response.headers["Cache-Control"] == "no-cache"
            while not received.endswith(b"data: [DONE]\n\n"):
                finished = received.rfind(b'"finish_reason":"stop"') > received.rfind(b"\n\n", 0, -2)
                # The usage chunk the proxy asked for itself never reaches this client, so
                # after the finish chunk it is released together with [DONE].
                gate.release(2 if finished and not client_asks_usage else 1)
                # Event k must arrive while event k+1 is still held by the simulator.
                while received.count(b"\n\n") <= events:
                    received += await response.content.readany()
                events += 1
                assert received.count(b"\n\n") == events
    # prompt annotation, role, 5 content, finish, [usage], [DONE]
    assert events == (10 if client_asks_usage else 9)
    assert (b'"usage":{' in received) == client_asks_usage


async def test_non_chat_paths_and_error_statuses_pass_through_unchanged(
        simulator: Running, proxy: Running, http: aiohttp.ClientSession) -> None:
    requests = [
        ("POST", f"/openai/deployments/gpt-4o/embeddings?api-version={API_VERSION}",
         {"input": "hello"}),
        ("GET", "/openai/v1/models", None),
        ("POST", chat_path("no-such-deployment"), {"messages": MESSAGES}),
        ("POST", "/openai/deployments/gpt-4o/unknown-operation?api-version=x", {}),
        ("POST", chat_path(), {"messages": MESSAGES}),
    ]
    for method, path, body in requests:
        seen = []
        for url in (simulator.url, proxy.url):
            extra = {"x-simulator": "scenario=server_error"} if body == {"messages": MESSAGES} \
                and "gpt-4o/" in path else {}
            async with http.request(method, url + path, json=body, headers=extra) as response:
                seen.append((response.status, response.headers.get("Content-Type"),
                             await response.read()))
        assert seen[0] == seen[1], path
    # One each on this proxy's fresh registry: the unknown deployment's 404 and the 500.
    for deployment, status in (("other", "404"), ("gpt-4o", "500")):
        assert proxy.sample("aoai_proxy_requests_total", deployment=deployment,
                            client="unknown",
                            operation="chat_completions", stream="false", status_code=status) == 1


async def test_embeddings_via_openai_client(simulator: Running, proxy: Running) -> None:
    embeddings = []
    for url in (simulator.url, proxy.url):
        async with azure(url) as client:
            embeddings.append((await client.embeddings.create(model="gpt-4o", input="hi")).data)
    assert embeddings[0][0].embedding == embeddings[1][0].embedding


async def test_configured_key_replaces_client_credentials(
        simulator: Running, start_proxy: Callable[..., Awaitable[Running]],
        http: aiohttp.ClientSession) -> None:
    stats = simulator.app[SIM_STATS]
    keyed = await start_proxy(simulator.url, api_key="azure-secret")
    plain = await start_proxy(simulator.url)
    sent = {"api-key": "client-key", "Authorization": "Bearer entra-token"}
    for proxy, expected in ((keyed, {"api-key": "azure-secret", "authorization": None}),
                            (plain, {"api-key": "client-key",
                                     "authorization": "Bearer entra-token"})):
        async with http.post(proxy.url + chat_path(), json={"messages": MESSAGES},
                             headers=sent) as response:
            assert response.status == 200
        recorded = {k.lower(): v for k, v in stats.requests[-1].headers.items()}
        assert {k: recorded.get(k) for k in expected} == expected
        assert recorded["x-forwarded-for"] == "127.0.0.1"


async def test_unreachable_upstream_gives_502_in_azure_shape(
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    proxy = await start_proxy("http://127.0.0.1:9")
    async with http.post(proxy.url + chat_path(), json={"messages": MESSAGES},
                         headers={"api-key": "sk-secret-in-request"}) as response:
        assert response.status == 502
        body = await response.json()
    assert body["error"]["code"] == "BadGateway"
    assert "sk-secret" not in json.dumps(body)
    assert proxy.sample("aoai_proxy_upstream_errors_total", deployment="gpt-4o",
                        error_type="connect") == 1


async def test_slow_upstream_headers_give_504(
        start_server: Callable[[web.Application], Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", never)
    upstream = await start_server(app)
    from proxy.config import TimeoutsConfig
    proxy = await start_proxy(upstream.url, timeouts=TimeoutsConfig(response=0.2))
    async with http.post(proxy.url + chat_path(), json={"messages": MESSAGES}) as response:
        assert response.status == 504
        assert (await response.json())["error"]["code"] == "GatewayTimeout"
    release.set()


async def test_client_disconnect_mid_stream_closes_the_upstream(
        start_simulator: Callable[..., Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    simulator = await start_simulator(SimulatorConfig(tokens=400, token_delay=0.02))
    stats = simulator.app[SIM_STATS]
    proxy = await start_proxy(simulator.url)
    session = aiohttp.ClientSession()
    response = await session.post(proxy.url + chat_path(),
                                  json={"messages": MESSAGES, "stream": True})
    await response.content.readany()
    response.close()
    await session.close()
    async with asyncio.timeout(5):
        while stats.streams_aborted < 1:
            await asyncio.sleep(0.01)
        while proxy.sample("aoai_proxy_in_flight_requests", deployment="gpt-4o") != 0:
            await asyncio.sleep(0.01)
    assert stats.streams_completed == 0
    assert proxy.sample("aoai_proxy_client_disconnects_total", deployment="gpt-4o",
                        client="unknown") == 1
