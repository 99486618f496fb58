"""Clients that hang up: at every stage of an exchange, and a thousand times in a row.

A raw upstream records the moment its connection closes; the proxy must close it as soon as
the client leaves (long before anything else would have: the upstream holds the response for
`HOLD` seconds and the proxy's own timeouts are longer still), count the disconnect once, and
leave nothing behind. How fast "as soon as" is under load is the benchmark's to measure.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psutil
import pytest

from proxy.runtime.lifecycle import LIFECYCLE
from tests.conftest import Running
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import (
    API_VERSION,
    DONE,
    SSE_HEADERS,
    STREAM_BODY,
    STREAM_BODY_WITH_USAGE,
    ParsedResponse,
    RawClient,
    RawRequest,
    UpstreamConn,
    chunk_event,
    describe_tasks,
    eventually,
    hold_the_loop,
    now,
    open_fds,
    port_of,
    query_value,
    request_bytes,
    total,
)

HOLD = 10.0  # longest an upstream holds a response open waiting for the proxy to leave
AT_ONCE = HOLD / 4
"""Closed this soon after the client left: by the proxy, not by the upstream's HOLD ending."""


def target(mode: str, n: int = 0) -> str:
    return (f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
            f"&mode={mode}&n={n}")


async def misbehave(request: RawRequest) -> None:
    """Answer by the `mode` query parameter, and never finish on its own before HOLD."""
    conn = request.conn
    mode = query_value(request.target, "mode")
    if mode == "hold-head":
        await conn.hold(HOLD)
        return
    if mode == "json-body":
        await conn.send_head(200, [("Content-Type", "application/json"),
                                   ("Content-Length", "100000")], chunked=False)
        await conn.send(b'{"choices":[' + b" " * 200)
        await conn.hold(HOLD)
        return
    if mode == "complete":  # and not kept alive: no pooled connection in the baselines
        await conn.send_head(200, [*SSE_HEADERS, ("Connection", "close")])
        await conn.send_chunk(chunk_event(0) + chunk_event(1, finish="stop") + DONE)
        await conn.end_chunks()
        conn.close()
        return
    await conn.send_head()
    if mode == "hold-body":
        await conn.hold(HOLD)
        return
    if mode == "partial-event":
        await conn.send_chunk(chunk_event(0) + b'data: {"choices":[{"del')
        await conn.hold(HOLD)
        return
    for i in range(int(HOLD / 0.005)):  # "stream": an event every 5 ms until the proxy leaves
        if not await conn.send_chunk(chunk_event(i)) or await conn.hold(0.005):
            return


@dataclass(frozen=True)
class Point:
    """Where in the exchange the client hangs up."""

    mode: str
    body: bytes
    ready: Callable[[ParsedResponse], bool]
    reaches_upstream: bool = True


POINTS = {
    "request-body": Point("stream", STREAM_BODY, lambda r: True, reaches_upstream=False),
    "before-headers": Point("hold-head", STREAM_BODY, lambda r: True),
    "after-headers": Point("hold-body", STREAM_BODY, lambda r: r.status is not None),
    "mid-event": Point("partial-event", STREAM_BODY_WITH_USAGE,
                       lambda r: b'{"choices":[{"del' in r.body),
    "mid-stream": Point("stream", STREAM_BODY, lambda r: r.body.count(b"\n\n") >= 5),
    "mid-json-body": Point("json-body", STREAM_BODY, lambda r: len(r.body) >= 100),
}


async def start_exchange(port: int, point: Point, n: int) -> RawClient:
    """Open a connection and send the request (only part of its body for `request-body`)."""
    client = await RawClient.connect(port)
    headers = [("Content-Type", "application/json"), ("api-key", "k")]
    if point.reaches_upstream:
        await client.send(request_bytes("POST", target(point.mode, n), body=point.body,
                                        headers=headers, close=False))
    else:
        head = request_bytes("POST", target(point.mode, n), headers=[
            *headers, ("Content-Length", "100000")], close=False)
        await client.send(head + point.body)
    return client


def hang_up(client: RawClient, how: str) -> float:
    at = now()
    if how == "reset":
        client.abort()
    else:
        client.close()
    return at


def in_flight(proxy: Running) -> float:
    return total(proxy.registry, "aoai_proxy_in_flight_requests")


def disconnects(proxy: Running) -> float:
    return total(proxy.registry, "aoai_proxy_client_disconnects_total")


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("where", list(POINTS))
async def test_client_hang_up_closes_the_upstream_at_once(
        where: str, how: str, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    point = POINTS[where]
    upstream = await raw_upstream(misbehave)
    proxy = await start_proxy(upstream.url)
    client = await start_exchange(port_of(proxy.url), point, 0)
    if point.reaches_upstream:
        assert await upstream.wait_requests(1), "the request never reached the upstream"
        assert await client.read_until(point.ready, timeout=5), client.response
    else:
        # The handler is reading the body when the client leaves.
        assert await eventually(lambda: len(proxy.app[LIFECYCLE].active) == 1)
    left_at = hang_up(client, how)

    if point.reaches_upstream:
        conn = upstream.conns[0]
        assert await eventually(lambda: conn.closed, timeout=AT_ONCE), "upstream left open"
        assert conn.closed_at is not None and conn.closed_at - left_at < AT_ONCE
    assert await eventually(lambda: disconnects(proxy) == 1, timeout=AT_ONCE), disconnects(proxy)
    assert in_flight(proxy) == 0
    assert total(proxy.registry, "aoai_proxy_requests_total") == 1
    if not point.reaches_upstream:
        # The handler has ended (the request is recorded): had it forwarded anything, the
        # upstream would have accepted the connection while the handler waited for it.
        assert upstream.conns == [], "a half-sent request was forwarded"
    await client.aclose()


def sockets() -> int:
    return len(psutil.Process().net_connections(kind="inet"))


async def test_a_thousand_aborted_streams_leave_no_task_socket_or_fd_behind(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    arrived: dict[str, asyncio.Event] = {}
    conn_of: dict[str, UpstreamConn] = {}

    async def script(request: RawRequest) -> None:
        n = query_value(request.target, "n") or ""
        conn_of[n] = request.conn
        arrived.setdefault(n, asyncio.Event()).set()
        await misbehave(request)

    upstream = await raw_upstream(script)
    proxy = await start_proxy(upstream.url)
    port = port_of(proxy.url)

    warm = await start_exchange(port, Point("complete", STREAM_BODY, lambda r: True), -1)
    assert await warm.read_to_end(5) and warm.response.complete
    await warm.aclose()
    assert await eventually(lambda: all(c.closed for c in upstream.conns), timeout=2)
    assert await eventually(lambda: total(proxy.registry, "aoai_proxy_requests_total") == 1
                            and in_flight(proxy) == 0)
    base_fds, base_sockets = open_fds(), sockets()
    base_tasks = set(asyncio.all_tasks())
    base_requests = len(upstream.requests)

    rng = random.Random(1000)
    names = ["request-body", "before-headers", "after-headers", "mid-event", "mid-stream",
             "mid-json-body"]
    plan = [(n, rng.choice(names), rng.choice(["close", "reset"])) for n in range(1000)]
    queue = list(reversed(plan))
    left: dict[str, float] = {}

    async def worker() -> None:
        for _ in range(len(plan)):
            if not queue:
                return
            n, where, how = queue.pop()
            point = POINTS[where]
            client = await start_exchange(port, point, n)
            if point.reaches_upstream:
                event = arrived.setdefault(str(n), asyncio.Event())
                async with asyncio.timeout(5):
                    await event.wait()
                await client.read_until(point.ready, timeout=5)
            left[str(n)] = hang_up(client, how)
            await client.aclose()

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker() for _ in range(50)))

    assert await eventually(lambda: disconnects(proxy) == 1000, timeout=10), disconnects(proxy)
    assert await eventually(lambda: in_flight(proxy) == 0, timeout=5), in_flight(proxy)
    assert await eventually(lambda: all(c.closed for c in upstream.conns), timeout=5)
    reached = sum(POINTS[w].reaches_upstream for _, w, _ in plan)
    assert len(upstream.requests) - base_requests == reached
    assert total(proxy.registry, "aoai_proxy_requests_total") == 1001
    assert total(proxy.registry, "aoai_proxy_upstream_errors_total") == 0
    lags = sorted(conn.closed_at - left[n] for n, conn in conn_of.items()
                  if n in left and conn.closed_at is not None)
    assert len(lags) == reached
    # Clients, proxy and upstream share one saturated event loop here: "at once" means before
    # the upstream's HOLD could have closed it.
    assert lags[-1] < AT_ONCE, lags[-20:]

    assert await eventually(lambda: len(asyncio.all_tasks()) <= len(base_tasks), timeout=5), \
        describe_tasks(asyncio.all_tasks() - base_tasks)
    assert await eventually(lambda: open_fds() <= base_fds, timeout=10, interval=0.05), (
        open_fds(), base_fds)
    assert await eventually(lambda: sockets() <= base_sockets, timeout=5), (sockets(),
                                                                           base_sockets)


async def test_hang_up_as_the_stream_ends_is_a_disconnect_not_an_error(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]],
        caplog: pytest.LogCaptureFixture) -> None:
    """The client's reset lands after the proxy read the upstream's last piece and before it
    wrote it: the write fails, then ending the chunked body fails. That is a client
    disconnect like any other, not an unhandled error with a traceback in the log.

    The order is forced on the one event loop: the last piece is in the proxy's socket when
    the test runs in the same loop iteration as the proxy's read of it, and the test's reset
    reaches the kernel before the proxy's handler writes it."""
    caplog.set_level(logging.WARNING)
    conns: list[UpstreamConn] = []
    go = asyncio.Event()

    async def script(request: RawRequest) -> None:
        conns.append(request.conn)
        await request.conn.send_head()
        await request.conn.send_chunk(chunk_event(0))
        async with asyncio.timeout(5):
            await go.wait()

    upstream = await raw_upstream(script)
    proxy = await start_proxy(upstream.url)
    client = await RawClient.connect(port_of(proxy.url))
    await client.send(request_bytes("POST", target("last"), body=STREAM_BODY_WITH_USAGE))
    assert await client.read_until(lambda r: bytes(r.body) == chunk_event(0), timeout=5)
    # A pause, not a wait for a condition: nothing shows that the proxy is back in its
    # upstream read. Were it late, the order below would not be forced, and the test would
    # check an ordinary hang-up instead (it cannot fail for that reason).
    await asyncio.sleep(0.05)
    last = chunk_event(1, finish="stop") + DONE
    conns[0].write_nowait(b"%x\r\n" % len(last) + last + b"\r\n0\r\n\r\n")
    hold_the_loop(0.01)
    await asyncio.sleep(0)  # this iteration also runs the proxy's read of the last piece
    client.abort()
    hold_the_loop(0.01)
    go.set()
    assert await eventually(lambda: total(proxy.registry, "aoai_proxy_requests_total") == 1)
    assert disconnects(proxy) == 1  # recorded with the request, in the same call
    assert total(proxy.registry, "aoai_proxy_upstream_errors_total") == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()} {r.exc_text or ''}"[:600] for r in errors]
