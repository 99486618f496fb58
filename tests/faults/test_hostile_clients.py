"""Slow or hostile clients: trickled headers and bodies, oversized and invalid bodies, and a
reader far slower than the upstream."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable

import pytest

from proxy.config import LimitsConfig, TimeoutsConfig
from tests.conftest import Running, SpawnProxy
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import (
    API_VERSION,
    CHAT_PATH,
    SSE_HEADERS,
    STREAM_BODY_WITH_USAGE,
    RawClient,
    RawRequest,
    answer_ok,
    assert_azure_error,
    chunk_event,
    now,
    port_of,
    raw_exchange,
    request_bytes,
    rss,
    total,
    yaml_config,
)

CLIENT_TIMEOUT = 2.0
SLACK = 1.5
DEFAULT_CLIENT_BOUND = 60.0
"""The documented default of `timeouts.client` (config.yaml): the bound on a slowloris."""


def upstream_entry(url: str) -> list[dict[str, object]]:
    return [{"name": "primary", "endpoint": url, "deployments": ["gpt-4o"]}]


def test_slowloris_bound_is_documented_and_finite() -> None:
    assert 0 < TimeoutsConfig().client <= DEFAULT_CLIENT_BOUND


async def trickle_until_closed(client: RawClient, data: bytes, *, interval: float,
                               limit: float) -> float | None:
    """Send `data` one byte per `interval` while watching for the server closing; returns
    when it closed (perf_counter), or None if it was still open after `limit` seconds."""
    deadline = now() + limit
    for byte in data:
        if client.eof or now() >= deadline:
            break
        if not await client.send(bytes([byte])):
            break
        await client.read_some(min(interval, max(deadline - now(), 0.01)))
    await client.read_until(lambda r: False, timeout=max(deadline - now(), 0.01))
    return client.eof_at


@pytest.mark.parametrize("after_a_request", [False, True], ids=["fresh", "keep-alive"])
async def test_slowloris_headers_are_cut_off(
        after_a_request: bool, raw_upstream: StartRawUpstream, spawn_proxy: SpawnProxy) -> None:
    upstream = await raw_upstream(answer_ok)
    proxy = await spawn_proxy(lambda port: yaml_config(
        upstream_entry(upstream.url), port, timeouts={"client": CLIENT_TIMEOUT},
        access_log=False))
    client = await RawClient.connect(proxy.port)
    start = now()
    if after_a_request:
        await client.send(request_bytes("GET", "/healthz", close=False))
        assert await client.read_until(lambda r: r.complete, timeout=5)
        start = now()
    request = request_bytes("POST", CHAT_PATH, body=STREAM_BODY_WITH_USAGE)
    closed_at = await trickle_until_closed(client, request, interval=1.0,
                                           limit=CLIENT_TIMEOUT + SLACK + 1)
    await client.aclose()
    assert closed_at is not None, (
        f"a client trickling its headers was still connected after "
        f"{CLIENT_TIMEOUT + SLACK + 1} s (timeouts.client = {CLIENT_TIMEOUT} s)")
    assert closed_at - start <= CLIENT_TIMEOUT + SLACK
    assert upstream.requests == []


async def test_slowly_sent_body_gets_an_azure_shaped_408(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    upstream = await raw_upstream(answer_ok)
    proxy = await start_proxy(upstream.url, timeouts=TimeoutsConfig(client=1.0))
    client = await RawClient.connect(port_of(proxy.url))
    head = request_bytes("POST", CHAT_PATH, headers=[("Content-Length", "1000")])
    start = now()
    await client.send(head)
    for _ in range(20):
        if not await client.send(b"x") or await client.read_until(
                lambda r: r.complete, timeout=0.2):
            break
    await client.read_to_end(SLACK)
    await client.aclose()
    response = client.response
    assert_azure_error(response.status, response.header("Content-Type"), bytes(response.body),
                       408)
    assert now() - start <= 1.0 + SLACK
    assert upstream.requests == []
    assert total(proxy.registry, "aoai_proxy_requests_total", status_code="408") == 1


LIMIT = 1000


def chunked(body: bytes, size: int = 97) -> bytes:
    out = b"".join(b"%x\r\n" % len(body[i:i + size]) + body[i:i + size] + b"\r\n"
                   for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


async def send_body(port: int, body: bytes, framing: str) -> RawClient:
    client = await RawClient.connect(port)
    headers = [("Content-Type", "application/json")]
    if framing == "content-length":
        data = request_bytes("POST", CHAT_PATH, body=body, headers=headers)
    else:
        data = request_bytes("POST", CHAT_PATH, headers=[
            *headers, ("Transfer-Encoding", "chunked")]) + chunked(body)
    # Write what the socket takes and read the answer at the same time (a 413 may come
    # before the whole body was sent).
    writing = asyncio.create_task(client.send(data))
    await client.read_to_end(10)
    writing.cancel()
    await asyncio.gather(writing, return_exceptions=True)
    await client.aclose()
    return client


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("size", [LIMIT + 1, 10 * 1024 * 1024])
async def test_oversized_bodies_get_an_azure_shaped_413(
        framing: str, size: int, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    upstream = await raw_upstream(answer_ok)
    proxy = await start_proxy(upstream.url, limits=LimitsConfig(max_request_body_bytes=LIMIT))
    client = await send_body(port_of(proxy.url), b"x" * size, framing)
    response = client.response
    error = assert_azure_error(response.status, response.header("Content-Type"),
                               bytes(response.body), 413)
    assert error["code"] == "RequestEntityTooLarge"
    assert upstream.requests == []
    assert total(proxy.registry, "aoai_proxy_requests_total", status_code="413") == 1


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_body_at_the_limit_is_forwarded(
        framing: str, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    upstream = await raw_upstream(answer_ok)
    proxy = await start_proxy(upstream.url, limits=LimitsConfig(max_request_body_bytes=LIMIT))
    body = b'{"x":"' + b"y" * (LIMIT - 8) + b'"}'
    client = await send_body(port_of(proxy.url), body, framing)
    assert client.response.status == 200
    assert [r.body for r in upstream.requests] == [body]


DEEP = b'{"stream":true,"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
INVALID_BODIES = {
    "truncated": b'{"stream": true, "messages": [',
    "trailing-comma": b'{"stream":true,"messages":[],}',
    "not-utf8": b'{"stream":true,"messages":"\xff\xfe"}',
    "array": b'[{"stream":true}]',
    "string": b'"stream"',
    "stream-as-string": b'{"stream":"true","messages":[]}',
    "options-not-object": b'{"stream":true,"stream_options":"yes","messages":[]}',
    "nan": b'{"stream":NaN}',
    "deeply-nested": DEEP,
    "empty": b"",
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("path", [
    CHAT_PATH, f"/openai/v1/chat/completions?api-version={API_VERSION}",
], ids=["deployment-path", "v1-path"])
@pytest.mark.parametrize("name", list(INVALID_BODIES))
async def test_invalid_json_bodies_are_forwarded_unchanged(
        name: str, path: str, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    upstream = await raw_upstream(answer_ok)
    proxy = await start_proxy(upstream.url)
    body = INVALID_BODIES[name]
    client = await raw_exchange(port_of(proxy.url), request_bytes(
        "POST", path, body=body, headers=[("Content-Type", "application/json")]))
    assert client.response.status == 200, bytes(client.response.body)[:300]
    assert bytes(client.response.body) == b'{"ok":true}'
    assert [r.body for r in upstream.requests] == [body]


STREAM_SIZE = 50 * 1024 * 1024
BLOCK = b"".join(chunk_event(i, content="x" * 900) for i in range(64))
STALL = 1.5


def backpressure_upstream(framing: str) -> Callable[[RawRequest], Awaitable[None]]:
    blocks = STREAM_SIZE // len(BLOCK)

    async def script(request: RawRequest) -> None:
        conn = request.conn
        if b"warm=1" in request.target:
            await conn.send_head(200, SSE_HEADERS)
            await conn.send_chunk(BLOCK)
            await conn.end_chunks()
            return
        if framing == "chunked":
            await conn.send_head(200, SSE_HEADERS)
            for _ in range(blocks):
                if not await conn.send_chunk(BLOCK):
                    return
            await conn.end_chunks()
            return
        await conn.send_head(200, [*SSE_HEADERS, ("Content-Length", str(blocks * len(BLOCK))),
                                   ("Connection", "close")], chunked=False)
        for _ in range(blocks):
            if not await conn.send(BLOCK):
                return
        conn.close()  # all sent; closing right away is what S3 and many servers do

    return script


@pytest.mark.parametrize("framing", ["chunked", "content-length-then-close"])
async def test_a_slow_reader_gets_back_pressure_not_buffering(
        framing: str, raw_upstream: StartRawUpstream, spawn_proxy: SpawnProxy) -> None:
    upstream = await raw_upstream(backpressure_upstream(framing))
    proxy = await spawn_proxy(lambda port: yaml_config(
        upstream_entry(upstream.url), port, access_log=False))
    warm = await raw_exchange(proxy.port, request_bytes(
        "POST", CHAT_PATH + "&warm=1", body=STREAM_BODY_WITH_USAGE))
    assert bytes(warm.response.body) == BLOCK
    base = rss(proxy.pid)
    blocks = STREAM_SIZE // len(BLOCK)
    expected = hashlib.sha256()
    for _ in range(blocks):
        expected.update(BLOCK)

    client = await RawClient.connect(proxy.port, rcvbuf=65536)
    client.response.keep = False
    await client.send(request_bytes("POST", CHAT_PATH, body=STREAM_BODY_WITH_USAGE))
    assert await client.read_until(lambda r: r.received >= 256 * 1024, timeout=10)
    await asyncio.sleep(STALL)
    conn = upstream.conns[-1]
    sent_while_stalled = conn.sent
    peak = rss(proxy.pid)
    deadline = now() + 60
    for reads in range(10_000_000):
        if client.response.complete or client.eof or now() > deadline:
            break
        await client.read_some(1.0)
        await asyncio.sleep(0.002)
        if reads % 25 == 0:
            peak = max(peak, rss(proxy.pid))
    await client.aclose()

    assert sent_while_stalled < STREAM_SIZE // 2, (
        f"the upstream sent {sent_while_stalled} bytes while the client read nothing")
    assert client.response.received == blocks * len(BLOCK), client.response.received
    assert client.response.complete
    assert client.response.digest.hexdigest() == expected.hexdigest()
    growth = peak - base
    assert growth < 10 * 1024 * 1024, f"proxy RSS grew {growth / 2**20:.1f} MiB"
    assert json.loads(BLOCK[6:BLOCK.index(b"\n\n")])  # the events are real chunks
