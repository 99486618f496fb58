"""An upstream that goes silent: `timeouts.idle` between chunks, `timeouts.response` before
the headers. On expiry the client's stream ends (or it gets a 504) and the stall is counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from proxy.config import TimeoutsConfig
from tests.conftest import Running
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import (
    CHAT_PATH,
    DONE,
    STREAM_BODY_WITH_USAGE,
    RawClient,
    RawRequest,
    assert_azure_error,
    chunk_event,
    eventually,
    now,
    port_of,
    request_bytes,
    total,
)

SHORT = 0.5
LONG = 5.0
SLACK = 1.0
STALL = 10.0  # how long a stalling upstream stays silent (far beyond every timeout here)
FIRST = chunk_event(0) + chunk_event(1)


async def stall(request: RawRequest) -> None:
    conn = request.conn
    where = request.target.rsplit(b"=", 1)[1].decode()
    if where == "headers":
        await conn.hold(STALL)
        return
    if where == "json-body":
        await conn.send_head(200, [("Content-Type", "application/json"),
                                   ("Content-Length", "1000")], chunked=False)
        await conn.send(b'{"choices":[')
        await conn.hold(STALL)
        return
    await conn.send_head()
    if where == "between-chunks":
        await conn.send_chunk(FIRST)
    await conn.hold(STALL)


def stall_request(where: str) -> bytes:
    return request_bytes("POST", f"{CHAT_PATH}&stall={where}", body=STREAM_BODY_WITH_USAGE,
                         headers=[("Content-Type", "application/json")])


@pytest.mark.parametrize("where, received", [
    ("before-first-chunk", b""), ("between-chunks", FIRST), ("json-body", b'{"choices":['),
])
async def test_idle_upstream_ends_the_client_stream_and_counts_a_timeout(
        where: str, received: bytes, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    upstream = await raw_upstream(stall)
    proxy = await start_proxy(upstream.url, timeouts=TimeoutsConfig(response=LONG, idle=SHORT))
    client = await RawClient.connect(port_of(proxy.url))
    sent = now()  # the upstream's last byte comes after this, and the idle clock after it
    await client.send(stall_request(where))
    assert await client.read_until(lambda r: r.status is not None and bytes(r.body) == received,
                                   timeout=LONG)
    silent_from = now()
    assert await client.read_until(lambda r: False, timeout=SHORT + SLACK) is False
    assert client.eof and client.eof_at is not None, "the stream outlived timeouts.idle"
    assert client.eof_at - sent >= SHORT, "cut before timeouts.idle passed"
    assert client.eof_at - silent_from <= SHORT + SLACK
    assert client.response.status == 200 and not client.response.complete
    assert bytes(client.response.body) == received
    await client.aclose()

    conn = upstream.conns[0]
    assert await eventually(lambda: conn.closed, timeout=SLACK), "upstream connection kept"
    registry = proxy.registry
    assert await eventually(lambda: total(registry, "aoai_proxy_requests_total") == 1)
    assert total(registry, "aoai_proxy_upstream_errors_total", error_type="timeout") == 1
    assert total(registry, "aoai_proxy_upstream_errors_total") == 1
    if where != "json-body":
        assert total(registry, "aoai_proxy_finish_reasons_total",
                     finish_reason="incomplete") == 1
    assert total(registry, "aoai_proxy_in_flight_requests") == 0


@pytest.mark.parametrize("timeouts", [
    TimeoutsConfig(response=SHORT, idle=LONG), TimeoutsConfig(response=LONG, idle=SHORT),
], ids=["response", "idle-before-headers"])
async def test_no_headers_in_time_is_an_azure_shaped_504(
        timeouts: TimeoutsConfig, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    upstream = await raw_upstream(stall)
    proxy = await start_proxy(upstream.url, timeouts=timeouts)
    client = await RawClient.connect(port_of(proxy.url))
    sent = now()
    await client.send(stall_request("headers"))
    assert await client.read_to_end(LONG)
    took = now() - sent
    response = client.response
    error = assert_azure_error(response.status, response.header("Content-Type"),
                               bytes(response.body), 504)
    assert error["code"] == "GatewayTimeout"
    assert SHORT <= took <= SHORT + SLACK  # `sent` is before the proxy's clock started
    await client.aclose()
    conn = upstream.conns[0]
    assert await eventually(lambda: conn.closed, timeout=SLACK), "upstream connection kept"
    registry = proxy.registry
    assert total(registry, "aoai_proxy_upstream_errors_total", error_type="timeout") == 1
    assert total(registry, "aoai_proxy_requests_total", status_code="504") == 1
    assert total(registry, "aoai_proxy_in_flight_requests") == 0


async def test_slow_but_steady_stream_is_not_cut(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    """Gaps shorter than timeouts.idle, a total far longer: idle is not a total timeout."""
    body = b"".join(chunk_event(i) for i in range(6)) + chunk_event(6, finish="stop") + DONE

    async def trickle(request: RawRequest) -> None:
        conn = request.conn
        await conn.send_head()
        for i in range(0, len(body), len(body) // 8 + 1):
            await conn.send_chunk(body[i:i + len(body) // 8 + 1])
            if await conn.hold(SHORT * 0.5):
                return
        await conn.end_chunks()

    upstream = await raw_upstream(trickle)
    proxy = await start_proxy(upstream.url, timeouts=TimeoutsConfig(response=SHORT, idle=SHORT))
    client = await RawClient.connect(port_of(proxy.url))
    await client.send(request_bytes("POST", CHAT_PATH, body=STREAM_BODY_WITH_USAGE))
    assert await client.read_to_end(10)
    assert client.response.complete and bytes(client.response.body) == body
    await client.aclose()
    assert await eventually(lambda: total(proxy.registry, "aoai_proxy_requests_total") == 1)
    assert total(proxy.registry, "aoai_proxy_upstream_errors_total") == 0
    assert total(proxy.registry, "aoai_proxy_finish_reasons_total", finish_reason="stop") == 1
