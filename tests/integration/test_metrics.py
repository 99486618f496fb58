"""Every number the proxy exports, checked exactly against what the upstream said and did.

Each test scrapes `/metrics` over HTTP before and after a request and compares the changes in
all counters and histogram counts with the exact expected set: a miscount anywhere, or a
series changing that should not, fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import string
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.config import ClientConfig
from proxy.simulator import SIM_STATS, SimulatorConfig
from proxy.simulator.completion import prompt_tokens
from tests.conftest import Running, chat_path

Series = tuple[str, frozenset[tuple[str, str]]]
MESSAGES = [{"role": "user", "content": "Tell me about streams."}]
PROMPT_TOKENS = prompt_tokens(MESSAGES[0]["content"])
"""What the simulator's stand-in tokenizer makes of the prompt."""
TOKENS = 8
"""Content chunks per choice the tests ask the simulator for (`tokens=`)."""
DC = {"deployment": "gpt-4o", "client": "unknown"}


async def scrape(http: aiohttp.ClientSession, proxy: Running) -> dict[Series, float]:
    async with http.get(proxy.url + "/metrics",
                        headers={"Accept-Encoding": "identity"}) as response:
        assert response.status == 200
        text = await response.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def changes(before: dict[Series, float], after: dict[Series, float]) -> dict[Series, float]:
    """Changed counters and histogram counts (sums and buckets are checked where they matter)."""
    return {k: round(v - before.get(k, 0.0), 9) for k, v in after.items()
            if (k[0].endswith("_total") or k[0].endswith("_count"))
            and v != before.get(k, 0.0)}


def series(name: str, **labels: str) -> Series:
    return (name, frozenset(labels.items()))


def request_series(status: int, stream: bool = True, operation: str = "chat_completions",
                   **dc: str) -> dict[Series, float]:
    labels = dc or DC
    s = "true" if stream else "false"
    return {
        series("aoai_proxy_requests_total", **labels, operation=operation, stream=s,
               status_code=str(status)): 1,
        series("aoai_proxy_request_duration_seconds_count", **labels, stream=s): 1,
        series("aoai_proxy_time_to_first_byte_seconds_count", **labels, stream=s): 1,
        **attempt_series(str(status), labels["deployment"]),
    }


def attempt_series(outcome: str, deployment: str = "gpt-4o") -> dict[Series, float]:
    """The one upstream attempt of a request to the single upstream `primary`."""
    du = {"deployment": deployment, "upstream": "primary"}
    return {series("aoai_proxy_upstream_requests_total", **du, status_code=outcome): 1,
            series("aoai_proxy_upstream_request_duration_seconds_count", **du): 1}


def token_series(completion: int, *, cached: int = 0, reasoning: int = 0,
                 **dc: str) -> dict[Series, float]:
    """The token counters for one request of MESSAGES whose completion has `completion` tokens
    (reasoning ones included), as the test asked the simulator for them."""
    labels = dc or DC
    values = {"prompt": PROMPT_TOKENS, "completion": completion, "cached": cached,
              "reasoning": reasoning}
    return {series("aoai_proxy_tokens_total", **labels, token_type=t): v
            for t, v in values.items() if v}


def streamed(first_token: bool = True, **dc: str) -> dict[Series, float]:
    labels = dc or DC
    if not first_token:
        return {}
    upstream = {"deployment": labels["deployment"], "upstream": "primary"}
    return {series("aoai_proxy_upstream_time_to_first_token_seconds_count", **upstream): 1,
            **{series(f"aoai_proxy_{name}_count", **labels): 1
               for name in ("time_to_first_token_seconds", "time_per_output_token_seconds",
                            "output_tokens_per_second")}}


def finish(reason: str, count: int = 1) -> dict[Series, float]:
    return {series("aoai_proxy_finish_reasons_total", **DC, finish_reason=reason): count}


async def post(http: aiohttp.ClientSession, proxy: Running, body: dict[str, Any],
               simulate: str = "", path: str | None = None) -> tuple[int, bytes]:
    headers = {"api-key": "k", **({"x-simulator": simulate} if simulate else {})}
    try:
        async with http.post(proxy.url + (path or chat_path()), json=body,
                             headers=headers) as response:
            return response.status, await response.read()
    except aiohttp.ClientPayloadError:
        return 200, b""  # the simulated upstream broke off; the proxy passed that on


@pytest.fixture
async def measure(http: aiohttp.ClientSession, proxy: Running,
                  simulator: Running) -> Callable[..., Awaitable[tuple[dict[Series, float],
                                                                       dict[str, Any] | None]]]:
    async def _measure(body: dict[str, Any], simulate: str = "",
                       path: str | None = None) -> tuple[dict[Series, float], dict[str, Any] | None]:
        stats = simulator.app[SIM_STATS]
        stats.last_usage = None
        before = await scrape(http, proxy)
        await post(http, proxy, body, simulate, path)
        async with asyncio.timeout(5):  # in-flight back to 0 means the exchange was recorded
            while proxy.sample("aoai_proxy_in_flight_requests", deployment="gpt-4o") != 0:
                await asyncio.sleep(0.005)
        return changes(before, await scrape(http, proxy)), stats.last_usage

    return _measure


STREAM = {"messages": MESSAGES, "stream": True}
# Tokens need a gap between them for time-per-token to exist (a burst has no duration).
GAP = "token_delay_ms=2; "
Measure = Callable[..., Awaitable[tuple[dict[Series, float], dict[str, Any] | None]]]


@pytest.mark.parametrize("scenario", ["stop", "length", "tool_calls"])
async def test_stream_finishing_normally(measure: Measure, scenario: str) -> None:
    delta, _ = await measure(STREAM, f"{GAP}tokens={TOKENS}; scenario={scenario}")
    assert delta == {**request_series(200), **token_series(TOKENS), **streamed(),
                     **finish(scenario)}


async def test_mid_stream_content_filter(measure: Measure) -> None:
    delta, _ = await measure(STREAM, f"{GAP}tokens={TOKENS}; scenario=content_filter; "
                                     "category=hate")
    assert delta == {  # the output filter cuts in halfway
        **request_series(200), **token_series(TOKENS // 2), **streamed(),
        **finish("content_filter"),
        series("aoai_proxy_content_filter_events_total", **DC, stage="completion",
               category="hate"): 1,
    }


@pytest.mark.parametrize("filter_mode_scenario,reason,category", [
    ("stop", "stop", None), ("content_filter", "content_filter", "protected_material_text")])
async def test_async_filter_annotations(measure: Measure, filter_mode_scenario: str,
                                        reason: str, category: str | None) -> None:
    simulate = f"{GAP}tokens={TOKENS}; filter_mode=async; scenario={filter_mode_scenario}"
    if category:
        simulate += f"; category={category}"
    delta, _ = await measure(STREAM, simulate)
    completion = TOKENS // 2 if category else TOKENS  # a block cuts in halfway
    expected = {**request_series(200), **token_series(completion), **streamed(),
                **finish(reason)}
    if category:
        expected[series("aoai_proxy_content_filter_events_total", **DC, stage="completion",
                        category=category)] = 1
    assert delta == expected


async def test_prompt_blocked_by_content_filter(measure: Measure) -> None:
    delta, _ = await measure(STREAM, "scenario=prompt_filter; category=jailbreak")
    assert delta == {
        **request_series(400),
        series("aoai_proxy_content_filter_events_total", **DC, stage="prompt",
               category="jailbreak"): 1,
    }


async def test_rate_limited(measure: Measure, http: aiohttp.ClientSession,
                            proxy: Running) -> None:
    delta, _ = await measure(STREAM, "scenario=rate_limit; retry_after_s=7")
    assert delta == {
        **request_series(429),
        series("aoai_proxy_rate_limited_total", **DC): 1,
        series("aoai_proxy_retry_after_seconds_count", deployment="gpt-4o"): 1,
    }
    samples = await scrape(http, proxy)
    assert samples[series("aoai_proxy_retry_after_seconds_sum", deployment="gpt-4o")] == 7
    assert samples[series("aoai_proxy_upstream_ratelimit_remaining", deployment="gpt-4o",
                          resource="tokens")] == 0


async def test_server_error(measure: Measure) -> None:
    delta, _ = await measure(STREAM, "scenario=server_error")
    assert delta == request_series(500)


async def test_abrupt_upstream_disconnect(measure: Measure) -> None:
    delta, _ = await measure(STREAM, GAP + "scenario=disconnect; tokens=20; disconnect_after=7")
    assert delta == {
        **request_series(200), **streamed(), **finish("incomplete"),
        series("aoai_proxy_upstream_errors_total", deployment="gpt-4o", error_type="reset"): 1,
        # No usage arrives on a broken stream: its content chunks are the estimate.
        series("aoai_proxy_estimated_completion_tokens_total", **DC): 7,
    }


async def test_two_choices(measure: Measure) -> None:
    delta, _ = await measure({**STREAM, "n": 2}, GAP + "tokens=5")
    assert delta == {**request_series(200), **token_series(2 * 5), **streamed(),
                     **finish("stop", 2)}


async def test_error_event_mid_stream(measure: Measure) -> None:
    delta, _ = await measure(STREAM, GAP + "scenario=error_event; tokens=10")
    assert delta == {**request_series(200), **streamed(), **finish("incomplete"),
                     series("aoai_proxy_estimated_completion_tokens_total", **DC): 5}


async def test_non_stream_usage_and_finish_reason(measure: Measure) -> None:
    delta, _ = await measure({"messages": MESSAGES},
                             f"tokens={TOKENS}; reasoning_tokens=3; cached_tokens=2")
    assert delta == {**request_series(200, stream=False),
                     **token_series(TOKENS + 3, reasoning=3, cached=2), **finish("stop")}


async def test_non_stream_content_filter(measure: Measure) -> None:
    delta, _ = await measure({"messages": MESSAGES}, f"tokens={TOKENS}; scenario=content_filter")
    assert delta == {**request_series(200, stream=False), **token_series(TOKENS // 2),
                     **finish("content_filter"),
                     series("aoai_proxy_content_filter_events_total", **DC, stage="completion",
                            category="violence"): 1}


async def test_exact_usage_without_the_client_asking(
        http: aiohttp.ClientSession, proxy: Running, simulator: Running) -> None:
    default = SimulatorConfig().tokens  # the `simulator` fixture's, asked for by no header
    status, body = await post(http, proxy, STREAM)
    assert status == 200
    assert b'"usage":{' not in body and body.endswith(b"data: [DONE]\n\n")
    assert proxy.sample("aoai_proxy_tokens_total", **DC, token_type="completion") == default
    status, body = await post(http, proxy, {**STREAM, "stream_options": {"include_usage": True}})
    assert body.count(b'"usage":{') == 1
    assert proxy.sample("aoai_proxy_tokens_total", **DC, token_type="completion") == 2 * default
    assert proxy.sample("aoai_proxy_estimated_completion_tokens_total", **DC) == 0


async def test_old_api_version_rejecting_stream_options_is_retried_and_remembered(
        http: aiohttp.ClientSession, proxy: Running, simulator: Running) -> None:
    stats = simulator.app[SIM_STATS]
    old = chat_path(api_version="2024-06-01")
    for attempt in range(2):
        seen = len(stats.requests)
        status, body = await post(http, proxy, STREAM, "tokens=6", path=old)
        assert status == 200 and body.endswith(b"data: [DONE]\n\n")
        # First time: rejected, then retried; afterwards the proxy knows not to ask.
        assert len(stats.requests) - seen == (2 if attempt == 0 else 1)
    assert proxy.sample("aoai_proxy_estimated_completion_tokens_total", **DC) == 12
    assert proxy.sample("aoai_proxy_tokens_total", **DC, token_type="completion") == 0


async def test_first_token_delay_shows_in_ttft_not_ttfb(
        http: aiohttp.ClientSession, proxy: Running) -> None:
    await post(http, proxy, STREAM, "first_token_delay_ms=400; tokens=3")
    samples = await scrape(http, proxy)
    ttfb = samples[series("aoai_proxy_time_to_first_byte_seconds_sum", **DC, stream="true")]
    ttft = samples[series("aoai_proxy_time_to_first_token_seconds_sum", **DC)]
    assert ttfb < 0.4 <= ttft


async def test_configured_client_is_named_and_others_are_unknown(
        simulator: Running, start_proxy: Callable[..., Awaitable[Running]],
        http: aiohttp.ClientSession) -> None:
    digest = hashlib.sha256(b"app-a-key").hexdigest()
    proxy = await start_proxy(simulator.url, clients=(ClientConfig("app-a", digest),))
    for key in ("app-a-key", "someone-else"):
        async with http.post(proxy.url + chat_path(), json={"messages": MESSAGES},
                             headers={"Authorization": f"Bearer {key}"}) as response:
            assert response.status == 200
    for client in ("app-a", "unknown"):
        assert proxy.sample("aoai_proxy_requests_total", deployment="gpt-4o", client=client,
                            operation="chat_completions", stream="false",
                            status_code="200") == 1
    text = str(await scrape(http, proxy))
    assert "app-a-key" not in text and digest not in text


async def test_random_deployments_and_keys_keep_labels_bounded(
        simulator: Running, proxy: Running, http: aiohttp.ClientSession) -> None:
    rng = random.Random(7)
    names = ["".join(rng.choices(string.ascii_lowercase + "-", k=12)) for _ in range(10_000)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for name in names:
        queue.put_nowait(name)

    async def worker() -> None:
        while not queue.empty():
            name = queue.get_nowait()
            path, body = (chat_path(name), {"messages": MESSAGES}) if len(name) % 2 else \
                ("/openai/v1/chat/completions", {"model": name, "messages": MESSAGES})
            async with http.post(proxy.url + path, json=body,
                                 headers={"api-key": name}) as response:
                await response.read()

    async with asyncio.timeout(120):
        await asyncio.gather(*(worker() for _ in range(32)))
    samples = await scrape(http, proxy)
    deployments = {dict(labels).get("deployment") for _, labels in samples} - {None}
    clients = {dict(labels).get("client") for _, labels in samples} - {None}
    assert deployments == {"gpt-4o", "gpt-4o-mini", "other"}
    assert clients == {"unknown"}
    assert sum(v for (name, labels), v in samples.items()
               if name == "aoai_proxy_requests_total") == 10_000
