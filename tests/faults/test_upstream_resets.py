"""An upstream that breaks off: the client gets every byte, then an unclean end, never [DONE]."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Running
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import (
    CHAT_PATH,
    STREAM_BODY,
    STREAM_BODY_WITH_USAGE,
    RawClient,
    RawRequest,
    RawUpstream,
    answer_ok,
    assert_azure_error,
    chunk_event,
    eventually,
    port_of,
    request_bytes,
    total,
)

EVENTS = [chunk_event(i) for i in range(6)]
PARTIAL = b'data: {"choices":[{"delta":{"content":"cut'
"""The start of an event whose rest never comes."""
TAIL = b'data: {"choices":[{"delt'
"""Sent inside a chunk whose declared size is never reached."""


def breaking_upstream(how: str, pieces: list[bytes],
                      go: asyncio.Event) -> Callable[[RawRequest], Awaitable[None]]:
    async def script(request: RawRequest) -> None:
        conn = request.conn
        if how == "before-headers":
            conn.reset()
            return
        await conn.send_head()
        for piece in pieces:
            await conn.send_chunk(piece)
        async with asyncio.timeout(10):
            await go.wait()
        if how == "rst":
            conn.reset()
        elif how == "fin":
            conn.close()
        else:  # "fin-mid-chunk": declare 1000 bytes, send a few, hang up
            await conn.send(b"3e8\r\n" + TAIL)
            conn.close()

    return script


def body_request(inject: bool) -> bytes:
    return request_bytes("POST", CHAT_PATH, body=STREAM_BODY if inject else STREAM_BODY_WITH_USAGE,
                         headers=[("Content-Type", "application/json")])


@pytest.mark.parametrize("how", ["rst", "fin", "fin-mid-chunk"])
@pytest.mark.parametrize("inject", [False, True], ids=["as-sent", "usage-injected"])
async def test_mid_stream_reset_passes_every_byte_then_ends_uncleanly(
        how: str, inject: bool, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    # With usage injected the proxy forwards whole events, holding a partial one until it
    # ends; when the upstream breaks off, what it held is sent too: every byte, either way.
    pieces = [*EVENTS, PARTIAL]
    go = asyncio.Event()
    upstream = await raw_upstream(breaking_upstream(how, pieces, go))
    proxy = await start_proxy(upstream.url)
    client = await RawClient.connect(port_of(proxy.url))
    await client.send(body_request(inject))
    before = b"".join(pieces)
    whole = b"".join(EVENTS)
    # Before the break, a proxy in injection mode has sent the whole events only.
    assert await client.read_until(
        lambda r: bytes(r.body) == (whole if inject else before), timeout=5), \
        bytes(client.response.body)
    go.set()
    assert await client.read_until(lambda r: False, timeout=5) is False
    assert client.eof, "the client connection was left open after the upstream broke off"
    response = client.response
    expected = before + (TAIL if how == "fin-mid-chunk" else b"")
    assert response.status == 200
    assert bytes(response.body) == expected
    assert not response.complete, "the proxy ended the body cleanly: the client cannot tell"
    assert b"[DONE]" not in response.body
    await client.aclose()

    registry = proxy.registry
    assert await eventually(lambda: total(registry, "aoai_proxy_requests_total") == 1)
    assert total(registry, "aoai_proxy_upstream_errors_total", error_type="reset") == 1
    assert total(registry, "aoai_proxy_upstream_errors_total") == 1
    assert total(registry, "aoai_proxy_finish_reasons_total", finish_reason="incomplete") == 1
    assert total(registry, "aoai_proxy_finish_reasons_total") == 1
    assert total(registry, "aoai_proxy_client_disconnects_total") == 0
    assert total(registry, "aoai_proxy_in_flight_requests") == 0


async def test_reset_right_after_the_headers_ends_the_client_stream(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    go = asyncio.Event()
    go.set()
    upstream = await raw_upstream(breaking_upstream("rst", [], go))
    proxy = await start_proxy(upstream.url)
    client = await RawClient.connect(port_of(proxy.url))
    await client.send(body_request(False))
    assert await client.read_until(lambda r: False, timeout=5) is False
    assert client.eof and client.response.status == 200 and not client.response.complete
    assert bytes(client.response.body) == b""
    await client.aclose()
    assert await eventually(lambda: total(proxy.registry, "aoai_proxy_upstream_errors_total",
                                          error_type="reset") == 1)
    assert total(proxy.registry, "aoai_proxy_finish_reasons_total",
                 finish_reason="incomplete") == 1


async def test_reset_before_the_headers_is_an_azure_shaped_502(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    upstream = await raw_upstream(breaking_upstream("before-headers", [], asyncio.Event()))
    proxy = await start_proxy(upstream.url)
    client = await RawClient.connect(port_of(proxy.url))
    await client.send(body_request(True))
    assert await client.read_to_end(5)
    response = client.response
    assert_azure_error(response.status, response.header("Content-Type"), bytes(response.body),
                       502)
    await client.aclose()
    assert total(proxy.registry, "aoai_proxy_upstream_errors_total", error_type="reset") == 1
    assert total(proxy.registry, "aoai_proxy_requests_total", status_code="502") == 1


async def test_an_upstream_closing_after_each_answer_gets_each_request_on_a_new_connection(
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    """Announced with `Connection: close`, as a server must (RFC 9112 9.6): the proxy never
    sends the next request on that connection, so none fails (and none is retried), even when
    the next request is already waiting as the answer arrives (pipelined by the client)."""
    upstream = await RawUpstream(answer_ok, max_requests_per_conn=1).start()
    try:
        proxy = await start_proxy(upstream.url)
        request = request_bytes("POST", CHAT_PATH, body=STREAM_BODY, close=False)
        for _ in range(5):
            client = await RawClient.connect(port_of(proxy.url))
            await client.send(request + request)
            received = b""
            async with asyncio.timeout(5):
                while received.count(b'{"ok":true}') < 2 and not client.eof:
                    received += await client.read_some(5)
            assert received.count(b"HTTP/1.1 200 ") == 2, received
            await client.aclose()
        assert len(upstream.requests) == len(upstream.conns) == 10
    finally:
        await upstream.close()
