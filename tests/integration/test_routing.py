"""Routing and failover end to end: real openai clients, the proxy, simulated regions.

Cooldown expiry is driven by an injected clock (`FakeClock`) where the test is about the
cooldown's length; weighted choice by a seeded random source, with the statistical bound each
test states. Everything listens on 127.0.0.1 with ephemeral ports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import openai
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.config import Config, FailoverConfig, SimulatorCapacity, UpstreamConfig
from proxy.routing.router import Router
from proxy.simulator import SIM_STATS, SimulatorConfig, create_simulator_app
from tests.conftest import API_VERSION, DEPLOYMENTS, Running, chat_path

MESSAGES = [{"role": "user", "content": "Say hello."}]
Start = Callable[[web.Application], Awaitable[Running]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def forcing(control: str) -> Callable[[web.Application], web.Application]:
    """Make a simulator answer every request as if sent `x-simulator: control`."""

    @web.middleware
    async def force(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers.copy()
        headers["x-simulator"] = control
        return await handler(request.clone(headers=headers))

    def apply(app: web.Application) -> web.Application:
        app.middlewares.insert(0, force)  # before the body is read (and recorded)
        return app

    return apply


async def region(start_server: Start, *, control: str | None = None,
                 deployments: tuple[str, ...] = ("gpt-4o", "gpt-4o-mini"),
                 **config: Any) -> Running:
    app = create_simulator_app(SimulatorConfig(deployments=deployments, **config))
    if control is not None:
        forcing(control)(app)
    return await start_server(app)


def requests_seen(simulator: Running) -> int:
    return len(simulator.app[SIM_STATS].requests)


async def routed_proxy(start_server: Start, upstreams: list[UpstreamConfig], *,
                       clock: FakeClock | None = None, seed: int = 3,
                       failover: FailoverConfig | None = None) -> Running:
    config = Config(upstreams=tuple(upstreams), access_log=False,
                    failover=failover or FailoverConfig())
    router = Router.from_upstreams(config.upstreams, config.failover,
                                   clock=clock or FakeClock(), rng=random.Random(seed))
    registry = CollectorRegistry()
    running = await start_server(create_app(config, registry, router=router))
    running.registry = registry
    return running


def up(name: str, target: Running, *deployments: Any, **extra: Any) -> UpstreamConfig:
    return UpstreamConfig(name=name, endpoint=target.url,
                          deployments=deployments or ("gpt-4o",), **extra)


def azure(proxy: Running, max_retries: int = 0) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(azure_endpoint=proxy.url, api_key="client-key",
                                   api_version=API_VERSION, max_retries=max_retries)


async def ask_both_ways(client: openai.AsyncAzureOpenAI) -> list[str]:
    """One non-streamed and one streamed completion: the upstream each came from."""
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert raw.parse().choices[0].finish_reason == "stop"
    served = [raw.headers["x-aoai-proxy-upstream"]]
    async with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=MESSAGES, stream=True) as stream:  # type: ignore[arg-type]
        served.append(stream.headers["x-aoai-proxy-upstream"])
        text = [line async for line in stream.iter_lines()]
    assert "data: [DONE]" in text
    return served


async def test_429_with_retry_after_fails_over_and_the_upstream_rests_for_its_cooldown(
        start_server: Start) -> None:
    clock = FakeClock()
    throttled = await region(start_server, control="scenario=rate_limit; retry_after_s=30")
    healthy = await region(start_server)
    proxy = await routed_proxy(start_server, [up("ptu", throttled, priority=0),
                                              up("paygo", healthy, priority=1)], clock=clock)
    async with azure(proxy) as client:  # max_retries=0: a 429 would raise
        assert await ask_both_ways(client) == ["paygo", "paygo"]
        assert requests_seen(throttled) == 1  # the first found it throttled; then it rested
        clock.now += 29.5
        assert await ask_both_ways(client) == ["paygo", "paygo"]
        assert requests_seen(throttled) == 1
        clock.now += 1.0  # past the 30 s it asked for
        assert await ask_both_ways(client) == ["paygo", "paygo"]
        assert requests_seen(throttled) == 2
    assert requests_seen(healthy) == 6
    du = {"deployment": "gpt-4o"}
    assert proxy.sample("aoai_proxy_upstream_requests_total", **du, upstream="ptu",
                        status_code="429") == 2
    assert proxy.sample("aoai_proxy_failovers_total", **du, upstream="ptu", reason="429") == 2
    assert proxy.sample("aoai_proxy_rate_limited_total", **du, client="unknown") == 0


async def test_weights_split_3_to_1_and_priority_1_gets_nothing_while_0_is_healthy(
        start_server: Start, http: aiohttp.ClientSession) -> None:
    a, b, backup = [await region(start_server, tokens=2) for _ in range(3)]
    proxy = await routed_proxy(start_server, [up("a", a, weight=3), up("b", b, weight=1),
                                              up("backup", backup, priority=1)], seed=11)
    served: Counter[str] = Counter()
    body = {"messages": MESSAGES}
    for _ in range(30):  # 300 requests, 10 at a time
        async def one() -> str:
            async with http.post(proxy.url + chat_path(), json=body,
                                 headers={"api-key": "k"}) as response:
                await response.read()
                assert response.status == 200
                return response.headers["x-aoai-proxy-upstream"]
        served.update(await asyncio.gather(*(one() for _ in range(10))))
    # `a`'s count is Binomial(300, 0.75): mean 225, sd 7.5. 4 sd either side (195..255) is
    # missed by a fair 3:1 choice with probability < 1e-4, and by 1:1 or 1:0 essentially never.
    assert abs(served["a"] - 225) <= 4 * math.sqrt(300 * 0.75 * 0.25), served
    assert served["a"] + served["b"] == 300 and served["backup"] == 0, served
    assert requests_seen(backup) == 0


async def test_a_stream_broken_after_its_first_byte_is_never_retried(
        start_server: Start, http: aiohttp.ClientSession) -> None:
    breaking = await region(start_server,
                            control="scenario=disconnect; tokens=10; disconnect_after=3")
    second = await region(start_server)
    proxy = await routed_proxy(start_server, [up("first", breaking), up("second", second,
                                                                       priority=1)])
    body = {"messages": MESSAGES, "stream": True}
    for _ in range(2):
        async with http.post(proxy.url + chat_path(), json=body,
                             headers={"api-key": "k"}) as response:
            assert response.status == 200
            assert response.headers["x-aoai-proxy-upstream"] == "first"
            received = b""
            try:
                async for piece in response.content.iter_any():
                    received += piece
            except aiohttp.ClientPayloadError:
                pass
            else:
                raise AssertionError("the broken stream was passed on as complete")
        assert b"data: [DONE]" not in received and b'"content"' in received
    assert requests_seen(second) == 0  # never retried, and the break did not cool `first`
    assert requests_seen(breaking) == 2
    assert proxy.sample("aoai_proxy_failovers_total", deployment="gpt-4o", upstream="first",
                        reason="5xx") == 0


async def test_aliases_rewrite_the_path_and_the_v1_model_and_nothing_else(
        start_server: Start, http: aiohttp.ClientSession) -> None:
    throttled = await region(start_server, control="scenario=server_error")
    renamed = await region(start_server, deployments=("gpt-4o-global",))
    proxy = await routed_proxy(start_server, [
        up("first", throttled),
        up("second", renamed, priority=1, aliases=(("gpt-4o", "gpt-4o-global"),))])
    # Odd but valid JSON: spacing, escapes, number forms and key order must survive.
    sent = (b'{ "messages" : [{"role":"user","content":"caf\\u00e9 \\"model\\": gpt-4o"}],'
            b'\n "temperature": 1.0e0, "model"  :  "gpt-4o", "metadata": {"model": "gpt-4o"} }'
            )
    classic = sent.replace(b'"model"  :  "gpt-4o", ', b"")
    async with http.post(proxy.url + chat_path() + "&x=1", data=classic,
                         headers={"api-key": "k", "content-type": "application/json"}) as r:
        assert r.status == 200 and r.headers["x-aoai-proxy-upstream"] == "second"
        assert r.headers["x-aoai-proxy-attempts"] == "2"
    recorded = renamed.app[SIM_STATS].requests[-1]
    assert recorded.path_qs == (f"/openai/deployments/gpt-4o-global/chat/completions"
                                f"?api-version={API_VERSION}&x=1")
    assert recorded.body == classic
    async with http.post(proxy.url + "/openai/v1/chat/completions", data=sent,
                         headers={"api-key": "k", "content-type": "application/json"}) as r:
        assert r.status == 200 and r.headers["x-aoai-proxy-upstream"] == "second"
    recorded = renamed.app[SIM_STATS].requests[-1]
    assert recorded.path_qs == "/openai/v1/chat/completions"
    assert recorded.body == sent.replace(b'"model"  :  "gpt-4o"', b'"model"  :  "gpt-4o-global"')
    # The first upstream got the client's own name, unchanged (and, cooling down after its
    # 500, not the v1 request).
    (first,) = throttled.app[SIM_STATS].requests
    assert first.path_qs.startswith("/openai/deployments/gpt-4o/") and first.body == classic


async def test_every_candidate_cooling_gives_the_proxys_own_429_then_the_sdk_retry_succeeds(
        start_server: Start, http: aiohttp.ClientSession) -> None:
    # Real time here: openai-python's retry really waits for the retry-after-ms we send.
    a, b = await region(start_server), await region(start_server)
    config = Config(upstreams=(up("a", a), up("b", b)), access_log=False)
    registry = CollectorRegistry()
    proxy = await start_server(create_app(config, registry))
    proxy.registry = registry
    throttle = {"api-key": "k", "x-simulator": "scenario=rate_limit; retry_after_s=3"}
    async with http.post(proxy.url + chat_path(), json={"messages": MESSAGES},
                         headers=throttle) as response:
        assert response.status == 429  # both tried; the last answer (Azure's) is passed on
        assert response.headers["x-aoai-proxy-attempts"] == "2"
        assert "x-ms-region" in response.headers
    async with http.post(proxy.url + chat_path(), json={"messages": MESSAGES},
                         headers={"api-key": "k"}) as response:
        body = await response.json()
        assert response.status == 429 and body["error"]["code"] == "429"
        assert response.headers["x-aoai-proxy-attempts"] == "0"
        assert "x-aoai-proxy-upstream" not in response.headers
        wait_ms = int(response.headers["retry-after-ms"])
        assert 1000 < wait_ms <= 3000 and response.headers["retry-after"] == "3"
    assert requests_seen(a) == requests_seen(b) == 1  # the proxy did not call Azure
    async with azure(proxy, max_retries=2) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert raw.parse().choices[0].finish_reason == "stop"
    assert raw.retries_taken == 1
    labels = {"deployment": "gpt-4o", "client": "unknown"}
    assert proxy.sample("aoai_proxy_rate_limited_total", **labels) == 3  # the proxy's own too
    assert proxy.sample("aoai_proxy_cooling_down_rejections_total", deployment="gpt-4o") == 2
    # 4 requests: 2 attempts (1 failover) + 0 + 0 + 1 attempt.
    async with http.get(proxy.url + "/metrics",
                        headers={"Accept-Encoding": "identity"}) as response:
        totals = sums(await response.text())
    assert totals["aoai_proxy_upstream_requests_total"] == 3 == (
        totals["aoai_proxy_requests_total"] - totals["aoai_proxy_cooling_down_rejections_total"]
        + totals["aoai_proxy_failovers_total"])


async def test_load_over_one_regions_quota_reaches_clients_without_a_429_and_adds_up(
        start_server: Start, http: aiohttp.ClientSession) -> None:
    # Two built-in simulated regions from config: eastus's 100 tokens per minute hold 7 of
    # the 60 requests below (about 14 tokens each); sweden has room for all of them. The router
    # draws between them at random: with 300 (21 requests) eastus drew fewer than that in
    # about one run in seventy and never answered 429; 7 is below any plausible draw.
    config = Config(upstreams=(
        UpstreamConfig(name="eastus", endpoint="simulator", deployments=("gpt-4o",),
                       simulator=SimulatorCapacity(tpm=100)),
        UpstreamConfig(name="sweden", endpoint="simulator", deployments=("gpt-4o",),
                       simulator=SimulatorCapacity(tpm=100_000)),
    ), access_log=False)
    registry = CollectorRegistry()
    proxy = await start_server(create_app(config, registry))
    proxy.registry = registry
    statuses: Counter[int] = Counter()
    body = {"messages": MESSAGES, "stream": True, "max_tokens": 5}

    async def one() -> None:
        async with http.post(proxy.url + chat_path(), json=body,
                             headers={"api-key": "k"}) as response:
            await response.read()
            statuses[response.status] += 1

    async with asyncio.timeout(60):
        for _ in range(6):  # 60 requests, 10 at a time: a few seconds with the demo's pace
            await asyncio.gather(*(one() for _ in range(10)))
    assert statuses == {200: 60}

    async with http.get(proxy.url + "/metrics",
                        headers={"Accept-Encoding": "identity"}) as response:
        text = await response.text()
    totals = sums(text)
    attempts = totals["aoai_proxy_upstream_requests_total"]
    requests = totals["aoai_proxy_requests_total"]
    failovers = totals["aoai_proxy_failovers_total"]
    own_429 = totals["aoai_proxy_cooling_down_rejections_total"]
    assert totals.get("aoai_proxy_rate_limited_total", 0) == 0
    assert attempts == requests - own_429 + failovers
    assert failovers > 0 and requests == 60 and own_429 == 0  # sweden never cooled
    assert proxy.sample("aoai_proxy_upstream_requests_total", deployment="gpt-4o",
                        upstream="eastus", status_code="429") == failovers
    assert proxy.sample("aoai_proxy_upstream_cooling_down", deployment="gpt-4o",
                        upstream="eastus") == 1
    assert proxy.sample("aoai_proxy_upstream_cooling_down", deployment="gpt-4o",
                        upstream="sweden") == 0


def sums(exposition: str) -> dict[str, float]:
    """Each counter's total over all its series, from the text exposition."""
    found: dict[str, float] = {}
    for line in exposition.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name.endswith("_total"):
            found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


async def test_every_response_says_where_it_was_served(
        start_server: Start, http: aiohttp.ClientSession) -> None:
    only = await region(start_server)
    proxy = await routed_proxy(start_server, [
        up("only", only, "gpt-4o", "gpt-4o-mini"),
        UpstreamConfig(name="gone", endpoint="http://127.0.0.1:9", deployments=("retired",))])
    for path, status, upstream in ((chat_path("gpt-4o-mini"), 200, "only"),
                                   (chat_path("elsewhere"), 404, "only"),
                                   (chat_path("retired"), 502, "gone")):
        async with http.post(proxy.url + path, json={"messages": MESSAGES},
                             headers={"api-key": "k"}) as response:
            assert response.status == status
            assert response.headers["x-aoai-proxy-upstream"] == upstream
            assert response.headers["x-aoai-proxy-attempts"] == "1"


async def test_azure_spillover_stays_transparent_and_is_counted(
        start_server: Start, http: aiohttp.ClientSession) -> None:
    @web.middleware
    async def spilled(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.headers.get("x-ms-spillover-deployment"):
            response.headers["x-ms-spillover-from-deployment"] = "gpt-4o-ptu"
        return response

    app = create_simulator_app(SimulatorConfig(deployments=("gpt-4o",)))
    app.middlewares.append(spilled)
    ptu = await start_server(app)
    proxy = await routed_proxy(start_server, [up("ptu", ptu)])
    for spill in ("gpt-4o-paygo", ""):
        headers = {"api-key": "k", **({"x-ms-spillover-deployment": spill} if spill else {})}
        async with http.post(proxy.url + chat_path(), json={"messages": MESSAGES},
                             headers=headers) as response:
            assert response.status == 200
            assert ("x-ms-spillover-from-deployment" in response.headers) == bool(spill)
    assert ptu.app[SIM_STATS].requests[0].headers["x-ms-spillover-deployment"] == "gpt-4o-paygo"
    assert proxy.sample("aoai_proxy_spillovers_total", deployment="gpt-4o") == 1


def test_start_up_warns_when_a_deployments_upstreams_mix_keys_and_client_credentials(
        caplog: Any) -> None:
    config = Config(upstreams=(
        UpstreamConfig(name="a", endpoint="https://a.example", deployments=("gpt-4o", "mini"),
                       api_key="key-a"),
        UpstreamConfig(name="b", endpoint="https://b.example", deployments=("gpt-4o",)),
        UpstreamConfig(name="c", endpoint="https://c.example", deployments=("mini",),
                       api_key="key-c")))
    with caplog.at_level("WARNING", logger="aoai_stream_proxy"):
        create_app(config, CollectorRegistry())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "'gpt-4o'" in warnings[0], warnings
    assert "Entra ID" in warnings[0] and "key-a" not in warnings[0]


async def test_connect_failures_and_response_timeouts_fail_over(
        start_server: Start, http: aiohttp.ClientSession) -> None:
    stalled = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        stalled.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    silent_app = web.Application()
    silent_app.router.add_route("*", "/{tail:.*}", never)
    silent = await start_server(silent_app)
    healthy = await region(start_server)
    config = Config(upstreams=(
        UpstreamConfig(name="closed", endpoint="http://127.0.0.1:9", deployments=("gpt-4o",)),
        UpstreamConfig(name="silent", endpoint=silent.url, deployments=("gpt-4o-mini",)),
        UpstreamConfig(name="healthy", endpoint=healthy.url, deployments=DEPLOYMENTS,
                       priority=1)), access_log=False)
    config = dataclasses.replace(config, timeouts=dataclasses.replace(config.timeouts,
                                                                      response=0.5))
    registry = CollectorRegistry()
    proxy = await start_server(create_app(config, registry))
    proxy.registry = registry
    for deployment, given_up in (("gpt-4o", "closed"), ("gpt-4o-mini", "silent")):
        async with http.post(proxy.url + chat_path(deployment), json={"messages": MESSAGES},
                             headers={"api-key": "k"}) as response:
            assert response.status == 200
            assert response.headers["x-aoai-proxy-upstream"] == "healthy"
            assert response.headers["x-aoai-proxy-attempts"] == "2"
        reason = "connect" if given_up == "closed" else "timeout"
        assert proxy.sample("aoai_proxy_failovers_total", deployment=deployment,
                            upstream=given_up, reason=reason) == 1
        assert proxy.sample("aoai_proxy_upstream_requests_total", deployment=deployment,
                            upstream=given_up, status_code=reason) == 1
        # An absorbed failure is not an upstream error of the request: the client got its answer.
        assert proxy.sample("aoai_proxy_upstream_errors_total", deployment=deployment,
                            error_type=reason) == 0
    assert stalled.is_set()
