"""An upstream that sends broken SSE, invalid JSON, huge events, wrong types and wrong lengths.

Bytes reach the client as sent wherever HTTP allows, the observer counts what it cannot
parse, nothing crashes, and a healthy stream through the same proxy at the same time arrives
byte-identical.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from proxy.config import LimitsConfig, TimeoutsConfig
from proxy.observe.observer import StreamObserver
from tests.conftest import Running
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import (
    API_VERSION,
    DONE,
    SSE_HEADERS,
    STREAM_BODY,
    STREAM_BODY_WITH_USAGE,
    RawClient,
    RawRequest,
    assert_azure_error,
    chunk_event,
    eventually,
    healthy_stream,
    port_of,
    query_value,
    request_bytes,
    total,
)

MAX_EVENT = 4096
IDLE = 1.0
FINISH = chunk_event(9, finish="stop") + DONE
HEALTHY = healthy_stream(40)
PIECES = (1, 7, 100, 3, 4096, 13)

MALFORMED_SSE = (
    b": a comment\n\n"
    b"no field here\n\n"
    b"data:\n\n"
    b"event: ping\n\n"
    b"data: \x00\xff\xfe not utf-8\n\n"
    b"\rdata: {\"choices\":\r\n\r\n"
    b"data: {\"a\":\ndata: 1}\n\n"
    b"\xef\xbb\xbfdata: [1]\n\n"
    b"id: 7\nretry: x\ndata: {\"choices\":[{\"delta\":{\"content\":\"ok\"},\"index\":0}]}\n\n"
    b"data: " + b"{" * 50 + b"\n\n"
) + FINISH
INVALID_JSON = (b"data: {not json}\n\n" b"data: {\"a\":1,}\n\n" b"data: nul\x00l\n\n"
                b"data: [1,2]\n\n") + FINISH
HUGE_EVENT = (chunk_event(0) + chunk_event(1, content="x" * (16 * MAX_EVENT)) + chunk_event(2)
              + FINISH)
DEEP_USAGE = (chunk_event(0) + b'data: {"choices":[],"usage":{"x":' + b"[" * 100_000
              + b"]" * 100_000 + b"}}\n\n" + FINISH)
"""A usage event nested past Python's recursion limit: the usage stripper parses it."""
SSE_BODY = chunk_event(0) + FINISH
DEEP_JSON = b'{"choices":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@dataclass(frozen=True)
class Case:
    status: int | bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes
    chunked: bool = True
    extra: bytes = b""
    """Bytes sent after the body (beyond its Content-Length), in a later write."""
    close: bool = False
    """Hang up after the body (for a body shorter than its Content-Length)."""


JSON = (("Content-Type", "application/json"),)
CASES = {
    "malformed-sse": Case(200, SSE_HEADERS, MALFORMED_SSE),
    "invalid-json": Case(200, SSE_HEADERS, INVALID_JSON),
    "huge-event": Case(200, SSE_HEADERS, HUGE_EVENT),
    "deep-usage-event": Case(200, SSE_HEADERS, DEEP_USAGE),
    "sse-labelled-json": Case(200, JSON, SSE_BODY),
    "sse-labelled-text": Case(200, (("Content-Type", "text/plain"),), SSE_BODY),
    "sse-without-type": Case(200, (), SSE_BODY),
    "json-labelled-sse": Case(200, SSE_HEADERS, b'{"choices":[{"message":{"content":"x"}}]}'),
    "invalid-json-body": Case(200, (*JSON, ("Content-Length", "23")), b'{"choices":[{"message":',
                              chunked=False),
    "deep-json-body": Case(200, (*JSON, ("Content-Length", str(len(DEEP_JSON)))), DEEP_JSON,
                           chunked=False),
    "longer-than-length": Case(200, (*JSON, ("Content-Length", "20")),
                               b'{"id":"cl-20","x":1}', chunked=False, extra=b"GARBAGE" * 3),
    "shorter-than-length": Case(200, (*JSON, ("Content-Length", "100")), b'{"id":"short',
                                chunked=False, close=True),
}


async def serve_case(request: RawRequest) -> None:
    conn = request.conn
    name = query_value(request.target, "case") or "healthy"
    if name == "healthy":
        await conn.send_head()
        offset = 0
        for size in PIECES * 100:
            if offset >= len(HEALTHY):
                break
            await conn.send_chunk(HEALTHY[offset:offset + size])
            offset += size
            await asyncio.sleep(0)
        await conn.end_chunks()
        return
    case = CASES[name]
    await conn.send_head(case.status, case.headers, chunked=case.chunked)
    if case.chunked:
        for i in range(0, len(case.body), 997):
            await conn.send_chunk(case.body[i:i + 997])
        await conn.end_chunks()
    else:
        await conn.send(case.body)
    if case.extra:
        await asyncio.sleep(0.05)
        await conn.send(case.extra)
    if case.close:
        conn.close()


def case_request(name: str, body: bytes) -> bytes:
    path = (f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
            f"&case={name}")
    return request_bytes("POST", path, body=body, headers=[("Content-Type", "application/json")])


async def fetch(port: int, name: str, body: bytes, timeout: float = 20) -> RawClient:
    client = await RawClient.connect(port)
    await client.send(case_request(name, body))
    await client.read_to_end(timeout)
    await client.aclose()
    return client


def expected_parse_errors(body: bytes) -> int:
    observer = StreamObserver(max_event_bytes=MAX_EVENT)
    observer.feed(body)
    return observer.close().parse_errors


@pytest.mark.parametrize("inject", [False, True], ids=["as-sent", "usage-injected"])
@pytest.mark.parametrize("name", list(CASES))
async def test_malformed_upstream_bytes_pass_and_a_healthy_stream_is_untouched(
        name: str, inject: bool, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    case = CASES[name]
    upstream = await raw_upstream(serve_case)
    proxy = await start_proxy(upstream.url,
                              limits=LimitsConfig(max_event_bytes=MAX_EVENT))
    port = port_of(proxy.url)
    body = STREAM_BODY if inject else STREAM_BODY_WITH_USAGE
    faulty, *healthy = await asyncio.gather(fetch(port, name, body),
                                            *(fetch(port, "healthy", body) for _ in range(3)))

    for each in healthy:
        assert each.response.status == 200 and each.response.complete
        assert bytes(each.response.body) == HEALTHY
    response = faulty.response
    assert response.status == 200
    if name == "shorter-than-length":
        assert bytes(response.body) == case.body and not response.complete
    else:
        assert bytes(response.body) == case.body, (len(response.body), len(case.body))
        assert response.complete

    registry = proxy.registry
    assert await eventually(lambda: total(registry, "aoai_proxy_requests_total") == 4)
    assert total(registry, "aoai_proxy_in_flight_requests") == 0
    assert total(registry, "aoai_proxy_finish_reasons_total", finish_reason="stop") >= 3
    parse_errors = total(registry, "aoai_proxy_stream_parse_errors_total")
    if name in ("malformed-sse", "invalid-json"):
        assert parse_errors == expected_parse_errors(case.body) > 0
    if name == "invalid-json":
        assert parse_errors == 4
    if name == "shorter-than-length":
        assert total(registry, "aoai_proxy_upstream_errors_total", error_type="reset") == 1
    else:
        assert total(registry, "aoai_proxy_upstream_errors_total") == 0
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]


async def test_bytes_beyond_content_length_do_not_leak_into_the_next_response(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    """The extra bytes stay on the upstream connection: it must not be reused for another
    request (whose response would start with them, or fail)."""
    upstream = await raw_upstream(serve_case)
    proxy = await start_proxy(upstream.url)
    port = port_of(proxy.url)
    first = await fetch(port, "longer-than-length", STREAM_BODY_WITH_USAGE)
    assert bytes(first.response.body) == CASES["longer-than-length"].body
    # The extra bytes arrive on the idle pooled connection (a request sent on it before
    # they arrive is answered by them: an HTTP/1.1 race no client can win). Once they have,
    # the proxy must drop that connection.
    (conn,) = upstream.conns
    assert await eventually(lambda: conn.closed), "the connection with stray bytes was kept"
    for _ in range(3):
        again = await fetch(port, "healthy", STREAM_BODY_WITH_USAGE)
        assert again.response.status == 200, bytes(again.response.body)[:200]
        assert bytes(again.response.body) == HEALTHY
    assert total(proxy.registry, "aoai_proxy_upstream_errors_total") == 0


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 000 Zero\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
], ids=["status-not-a-number", "header-without-colon", "huge-header", "te-and-cl",
        "not-http", "status-000", "status-099"])
async def test_garbage_response_heads_are_an_azure_shaped_502(
        head: bytes, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    async def garbage(request: RawRequest) -> None:
        await request.conn.send(head)
        await request.conn.hold(2)

    upstream = await raw_upstream(garbage)
    proxy = await start_proxy(upstream.url)
    client = await fetch(port_of(proxy.url), "garbage", STREAM_BODY)
    response = client.response
    assert response.status is not None and 100 <= response.status <= 999, \
        f"the client got an invalid status line: {bytes(response.raw[:40])!r}"
    assert_azure_error(response.status, response.header("Content-Type"), bytes(response.body),
                       502)
    assert total(proxy.registry, "aoai_proxy_upstream_errors_total") == 1


async def test_bad_chunk_framing_mid_stream_ends_the_client_stream(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    """An invalid chunk size after the first chunk: the client's stream must end (as for a
    reset), at the latest when `timeouts.idle` expires."""
    async def bad_chunk(request: RawRequest) -> None:
        await request.conn.send_head()
        await request.conn.send_chunk(chunk_event(0))
        await asyncio.sleep(0.05)
        await request.conn.send(b"zz\r\nnot a chunk\r\n")
        await request.conn.hold(IDLE + 3)

    upstream = await raw_upstream(bad_chunk)
    proxy = await start_proxy(upstream.url, timeouts=TimeoutsConfig(idle=IDLE))
    client = await fetch(port_of(proxy.url), "bad-chunk", STREAM_BODY_WITH_USAGE,
                         timeout=IDLE + 2)
    assert client.eof, f"the client stream still hangs {IDLE + 2} s after the bad chunk"
    assert not client.response.complete
    assert bytes(client.response.body) == chunk_event(0)
    assert await eventually(lambda: total(proxy.registry, "aoai_proxy_upstream_errors_total")
                            == 1)
    assert json.loads(chunk_event(0)[6:])  # the event itself was intact
