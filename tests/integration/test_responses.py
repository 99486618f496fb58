"""The Responses API through the proxy: what clients get, and every number the proxy exports.

Real clients (openai-python, aiohttp) against the proxy in front of the simulator (or of an
upstream replaying a recorded stream). Wire facts: docs/responses-wire.md. Expected numbers come
from each request's own parameters (`x-simulator` tokens, reasoning and cached tokens, the
input's length), never from what the simulator reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.conftest import Running
from tests.integration.test_forwarding import recorded_upstream
from tests.integration.test_metrics import Series, changes, scrape, series

API_VERSION = "2025-04-01-preview"
V1 = "/openai/v1/responses"
PREVIEW = f"/openai/responses?api-version={API_VERSION}"
INPUT = "Tell me about streams, please."
PROMPT_TOKENS = len(INPUT) // 4 + 7  # the simulator's stand-in tokenizer
DC = {"deployment": "gpt-4o", "client": "unknown"}
UPSTREAM = {"deployment": "gpt-4o", "upstream": "primary"}
STREAMS = Path(__file__).parents[1] / "data" / "streams"
GAP = "token_delay_ms=2; "  # tokens with time between them: time per token and tokens/s exist


# --- what the client gets -------------------------------------------------------------------


async def openai_stream(client: openai.AsyncOpenAI, simulate: str) -> tuple[str, list[str], str]:
    """(text, event types, final status) of one streamed response."""
    stream = await client.responses.create(
        model="gpt-4o", input=INPUT, stream=True, extra_headers={"x-simulator": simulate})
    text, kinds, status = "", [], ""
    async for item in stream:
        kinds.append(item.type)
        if item.type == "response.output_text.delta":
            text += item.delta
        if item.type in ("response.completed", "response.incomplete", "response.failed"):
            status = item.response.status
    return text, kinds, status


def azure_client(url: str) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(azure_endpoint=url, api_key="k", api_version=API_VERSION,
                                   max_retries=0)


def v1_client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/openai/v1/", api_key="k", max_retries=0)


@pytest.mark.parametrize("make", [azure_client, v1_client], ids=["AzureOpenAI", "v1"])
@pytest.mark.parametrize("simulate", [
    "tokens=8", "scenario=length; tokens=8", "scenario=tool_calls; tokens=8",
    "tokens=6; reasoning_tokens=9",
    "scenario=content_filter; tokens=8; filter_ending=incomplete"])
async def test_openai_client_sees_what_it_sees_directly(
        make: Callable[[str], openai.AsyncOpenAI], simulate: str, simulator: Running,
        proxy: Running) -> None:
    async with make(simulator.url) as direct, make(proxy.url) as proxied:
        expected = await openai_stream(direct, simulate)
        assert await openai_stream(proxied, simulate) == expected
    assert expected[0] or "tool_calls" in simulate
    assert expected[2] in ("completed", "incomplete")


@pytest.mark.parametrize("make", [azure_client, v1_client], ids=["AzureOpenAI", "v1"])
async def test_openai_client_raises_on_the_filter_kill_as_it_does_directly(
        make: Callable[[str], openai.AsyncOpenAI], simulator: Running, proxy: Running) -> None:
    messages = []
    for url in (simulator.url, proxy.url):
        async with make(url) as client:
            with pytest.raises(openai.APIError) as raised:
                await openai_stream(client, "scenario=content_filter; tokens=8")
            messages.append(str(raised.value))
    assert messages[0] == messages[1]


def recorded_streams() -> list[str]:
    return sorted(p.name for p in STREAMS.glob("responses-*.sse"))


@pytest.mark.parametrize("name", recorded_streams())
@pytest.mark.parametrize("path", [V1, PREVIEW])
async def test_raw_bytes_are_identical(
        name: str, path: str, start_server: Callable[[web.Application], Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    """With usage injection on (the default): the proxy adds and removes nothing on a Responses
    stream, whatever it holds (its terminal events carry `"usage":{...}`)."""
    body = (STREAMS / name).read_bytes()
    received: list[bytes] = []
    upstream = await start_server(recorded_upstream(body, [1, 7, 100, 3, 4096], received))
    proxy = await start_proxy(upstream.url)
    request = b'{"model": "gpt-4o", "input": "x", "stream": true}'
    for url in (upstream.url, proxy.url):
        async with http.post(url + path, data=request,
                             headers={"Content-Type": "application/json"}) as response:
            assert await response.read() == body
    assert received == [request, request]  # never a `stream_options` added


async def test_regression_3_a_stream_with_content_length_is_whole(
        start_server: Callable[[web.Application], Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    """docs/responses-wire.md section 8, regression 3: an upstream that gives its stream a
    Content-Length must not get it cut to the first piece."""
    body = (STREAMS / "responses-completed.sse").read_bytes()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.content_length = len(body)
        await response.prepare(request)
        for at in range(0, len(body), 500):
            await response.write(body[at : at + 500])
            await asyncio.sleep(0)
        return response

    app = web.Application()
    app.router.add_post(V1, handler)
    upstream = await start_server(app)
    proxy = await start_proxy(upstream.url)
    async with http.post(proxy.url + V1, json={"model": "gpt-4o", "input": INPUT,
                                               "stream": True}) as response:
        assert await response.read() == body
    assert proxy.sample("aoai_proxy_tokens_total", **DC, token_type="prompt") == 12


# --- every number, for a scripted mix of every scenario --------------------------------------


def requests(status: int, stream: bool) -> dict[Series, float]:
    s = "true" if stream else "false"
    return {
        series("aoai_proxy_requests_total", **DC, operation="responses", stream=s,
               status_code=str(status)): 1,
        series("aoai_proxy_request_duration_seconds_count", **DC, stream=s): 1,
        series("aoai_proxy_time_to_first_byte_seconds_count", **DC, stream=s): 1,
        # The one upstream attempt (single upstream `primary`: no failover).
        series("aoai_proxy_upstream_requests_total", **UPSTREAM, status_code=str(status)): 1,
        series("aoai_proxy_upstream_request_duration_seconds_count", **UPSTREAM): 1,
    }


def tokens(output: int, reasoning: int = 0, cached: int = 0) -> dict[Series, float]:
    counts = {"prompt": PROMPT_TOKENS, "completion": output + reasoning, "cached": cached,
              "reasoning": reasoning}
    return {series("aoai_proxy_tokens_total", **DC, token_type=t): v
            for t, v in counts.items() if v}


def timing(output: int) -> dict[Series, float]:
    """A stream that carried `output` deltas: first token, and per-token timing for > 1."""
    names = ["time_to_first_token_seconds"] if output else []
    if output > 1:
        names += ["time_per_output_token_seconds", "output_tokens_per_second"]
    first = {series("aoai_proxy_upstream_time_to_first_token_seconds_count", **UPSTREAM): 1}
    return {**(first if output else {}),
            **{series(f"aoai_proxy_{name}_count", **DC): 1 for name in names}}


def finish(reason: str) -> dict[Series, float]:
    return {series("aoai_proxy_finish_reasons_total", **DC, finish_reason=reason): 1}


def filtered(stage: str, category: str) -> dict[Series, float]:
    return {series("aoai_proxy_content_filter_events_total", **DC, stage=stage,
                   category=category): 1}


def estimated(count: int) -> dict[Series, float]:
    return {series("aoai_proxy_estimated_completion_tokens_total", **DC): count}


RESET = {series("aoai_proxy_upstream_errors_total", deployment="gpt-4o", error_type="reset"): 1}
RATE_LIMITED = {series("aoai_proxy_rate_limited_total", **DC): 1,
                series("aoai_proxy_retry_after_seconds_count", deployment="gpt-4o"): 1}

# (stream, extra request fields, x-simulator, expected changes)
MIX: list[tuple[bool, dict[str, Any], str, dict[Series, float]]] = [
    (True, {}, GAP + "tokens=9; cached_tokens=4",
     {**requests(200, True), **tokens(9, cached=4), **timing(9), **finish("stop")}),
    (True, {"max_output_tokens": 16}, GAP + "tokens=30",
     {**requests(200, True), **tokens(16), **timing(16), **finish("length")}),
    (True, {}, GAP + "scenario=length; tokens=7",
     {**requests(200, True), **tokens(7), **timing(7), **finish("length")}),
    (True, {}, GAP + "scenario=content_filter; tokens=10; category=sexual; filter_ending=incomplete",
     {**requests(200, True), **tokens(5), **timing(5), **finish("content_filter"),
      **filtered("completion", "sexual")}),
    (True, {}, GAP + "scenario=content_filter; tokens=10",  # the kill: no output released
     {**requests(200, True), **tokens(5), **finish("content_filter"),
      **filtered("completion", "other")}),
    (True, {}, GAP + "scenario=tool_calls; tokens=6",
     {**requests(200, True), **tokens(6), **timing(6), **finish("tool_calls")}),
    (True, {}, GAP + "tokens=5; reasoning_tokens=40; cached_tokens=16",
     {**requests(200, True), **tokens(5, reasoning=40, cached=16), **timing(5),
      **finish("stop")}),
    (True, {}, GAP + "scenario=error_event; tokens=10",  # an error frame, no terminal event
     {**requests(200, True), **timing(5), **finish("incomplete"), **estimated(5)}),
    (True, {}, GAP + "scenario=error_event; tokens=10; error_ending=failed",
     {**requests(200, True), **tokens(5), **timing(5), **finish("incomplete")}),
    (True, {}, GAP + "scenario=disconnect; tokens=20; disconnect_after=7",
     {**requests(200, True), **timing(7), **finish("incomplete"), **estimated(7), **RESET}),
    (True, {}, "scenario=prompt_filter; category=jailbreak",
     {**requests(400, True), **filtered("prompt", "jailbreak")}),
    (True, {}, "scenario=rate_limit; retry_after_s=3", {**requests(429, True), **RATE_LIMITED}),
    (True, {}, "scenario=server_error", requests(500, True)),
    (False, {}, "tokens=12; reasoning_tokens=3; cached_tokens=8",
     {**requests(200, False), **tokens(12, reasoning=3, cached=8), **finish("stop")}),
    (False, {"max_output_tokens": 16}, "tokens=40",
     {**requests(200, False), **tokens(16), **finish("length")}),
    (False, {}, "scenario=content_filter; tokens=10; category=violence",
     {**requests(200, False), **tokens(5), **finish("content_filter"),
      **filtered("completion", "violence")}),
    (False, {}, "scenario=tool_calls; tokens=6",
     {**requests(200, False), **tokens(6), **finish("tool_calls")}),
    (False, {}, "scenario=prompt_filter; category=self_harm",
     {**requests(400, False), **filtered("prompt", "self_harm")}),
    (False, {}, "scenario=rate_limit; retry_after_s=3", {**requests(429, False), **RATE_LIMITED}),
    (False, {}, "scenario=error_event", requests(500, False)),
]
TOOLS = [{"type": "function", "name": "get_weather", "parameters": {}}]


async def send(http: aiohttp.ClientSession, proxy: Running, path: str, stream: bool,
               fields: dict[str, Any], simulate: str) -> None:
    body = {"model": "gpt-4o", "input": INPUT, "stream": stream, "tools": TOOLS, **fields}
    try:
        async with http.post(proxy.url + path, json=body,
                             headers={"api-key": "k", "x-simulator": simulate}) as response:
            await response.read()
    except aiohttp.ClientPayloadError:
        pass  # the simulated upstream broke off; the proxy passed that on
    async with asyncio.timeout(5):  # in-flight back to 0: the exchange was recorded
        while proxy.sample("aoai_proxy_in_flight_requests", deployment="gpt-4o") != 0:
            await asyncio.sleep(0.005)


async def test_scripted_mix_of_every_scenario_gives_exact_metrics(
        http: aiohttp.ClientSession, proxy: Running) -> None:
    start = before = await scrape(http, proxy)
    total: dict[Series, float] = {}
    for i, (stream, fields, simulate, expected) in enumerate(MIX):
        await send(http, proxy, V1 if i % 2 else PREVIEW, stream, fields, simulate)
        after = await scrape(http, proxy)
        assert changes(before, after) == expected, (stream, simulate)
        before = after
        for key, value in expected.items():
            total[key] = total.get(key, 0) + value
    assert changes(start, before) == total
    ops = {dict(labels)["operation"] for (name, labels), value in changes(start, before).items()
           if name == "aoai_proxy_requests_total"}
    assert ops == {"responses"}


async def test_reasoning_stream_first_token_comes_after_its_reasoning(
        http: aiohttp.ClientSession, proxy: Running) -> None:
    # 12 summary deltas 40 ms apart come before the first output: at least 0.44 s.
    await send(http, proxy, V1, True, {}, "token_delay_ms=40; tokens=3; reasoning_tokens=12")
    ttft = proxy.sample("aoai_proxy_time_to_first_token_seconds_sum", **DC)
    assert proxy.sample("aoai_proxy_time_to_first_token_seconds_count", **DC) == 1
    assert ttft >= 11 * 0.040
    duration = proxy.sample("aoai_proxy_request_duration_seconds_sum", **DC, stream="true")
    assert ttft <= duration


async def test_other_operations_are_labelled_by_path(
        http: aiohttp.ClientSession, proxy: Running) -> None:
    cases = [
        ("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
         {"messages": [{"role": "user", "content": "x"}]}, "chat_completions"),
        ("/openai/v1/chat/completions", {"model": "gpt-4o",
                                         "messages": [{"role": "user", "content": "x"}]},
         "chat_completions"),
        ("/openai/deployments/gpt-4o/embeddings?api-version=2024-10-21", {"input": "x"},
         "embeddings"),
        ("/openai/v1/embeddings", {"model": "gpt-4o", "input": "x"}, "embeddings"),
        ("/openai/deployments/gpt-4o/completions?api-version=2024-10-21", {"prompt": "x"},
         "completions"),
        (V1, {"model": "gpt-4o", "input": "x"}, "responses"),
        ("/openai/v1/models", None, "other"),
    ]
    counted: dict[tuple[str, str, str], int] = {}
    for path, body, operation in cases:
        method = "GET" if body is None else "POST"
        async with http.request(method, proxy.url + path, json=body,
                                headers={"api-key": "k"}) as response:
            await response.read()
            status = str(response.status)
        deployment = "gpt-4o" if body is not None else "other"
        key = (deployment, operation, status)
        counted[key] = counted.get(key, 0) + 1
        async with asyncio.timeout(5):
            while proxy.sample("aoai_proxy_requests_total", deployment=deployment,
                               client="unknown", operation=operation, stream="false",
                               status_code=status) != counted[key]:
                await asyncio.sleep(0.005)
