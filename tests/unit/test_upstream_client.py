"""The upstream client against a raw upstream that writes exactly the bytes each test scripts:
what goes out, which connections are reused, and how every way a response can end is told."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from multidict import CIMultiDict

from proxy.upstream_client import (
    ConnectFailed,
    Disconnected,
    ProtocolError,
    UpstreamClient,
    UpstreamResponse,
)
from proxy.upstream_client import pool as pool_module
from proxy.upstream_client.body import HIGH_WATER
from proxy.upstream_client.pool import Origin


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


Answer = Callable[[Conn, bytes], Awaitable[None]]


class RawUpstream:
    """Reads each request (head and Content-Length body) and lets `answer` write the reply."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.conns: list[Conn] = []
        self.arrived = asyncio.Condition()
        self.base = ""

    async def start(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def close(self) -> None:
        for conn in self.conns:
            conn.writer.close()
        self._server.close()
        await self._server.wait_closed()

    @property
    def requests(self) -> list[bytes]:
        return [r for c in self.conns for r in c.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(reader, writer)
        self.conns.append(conn)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                conn.requests.append(request)
                async with self.arrived:
                    self.arrived.notify_all()
                await self.answer(conn, request)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            conn.closed.set()
            writer.close()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(connect_timeout=5)
    yield client
    await client.close()


@pytest.fixture
async def upstream_with() -> AsyncIterator[Callable[[Answer], Awaitable[RawUpstream]]]:
    started: list[RawUpstream] = []

    async def start(answer: Answer) -> RawUpstream:
        started.append(await RawUpstream(answer).start())
        return started[-1]

    yield start
    for upstream in started:
        await upstream.close()


def replying(raw: bytes) -> Answer:
    async def answer(conn: Conn, request: bytes) -> None:
        conn.writer.write(raw)
        await conn.writer.drain()
    return answer


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def body_of(response: UpstreamResponse) -> bytes:
    parts = [piece async for piece in response.content]
    return b"".join(parts)


async def post(client: UpstreamClient, upstream: RawUpstream, target: str = "/x",
               body: bytes = b"{}", headers: CIMultiDict[str] | None = None,
               method: str = "POST") -> UpstreamResponse:
    return await client.request(upstream.base, method, target, headers or CIMultiDict(), body)


async def test_the_request_goes_out_as_given_and_its_connection_is_reused(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    upstream = await upstream_with(replying(OK))
    headers = CIMultiDict([("api-key", "k"), ("X-Dup", "1"), ("x-dup", "2")])
    for _ in range(3):
        response = await post(client, upstream, "/p?a=%2F&b", b'{"a":1}', headers)
        assert (response.status, response.reason) == (200, "OK")
        assert await body_of(response) == b"ok"
        response.release()
    host = upstream.base.removeprefix("http://")
    assert upstream.requests == [
        f"POST /p?a=%2F&b HTTP/1.1\r\nHost: {host}\r\napi-key: k\r\nX-Dup: 1\r\nx-dup: 2\r\n"
        "Content-Length: 7\r\n\r\n{\"a\":1}".encode()] * 3
    assert len(upstream.conns) == 1, "a cleanly ended response's connection is reused"


async def test_concurrent_requests_never_wait_for_a_connection(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    """Every concurrent stream needs its own connection: a pool limit would silently queue
    streams behind each other. The upstream answers only once all of them have arrived."""
    count = 40

    async def answer_when_all_arrived(conn: Conn, request: bytes) -> None:
        async with upstream.arrived:
            await upstream.arrived.wait_for(lambda: len(upstream.requests) >= count)
        conn.writer.write(OK)

    upstream = await upstream_with(answer_when_all_arrived)
    async with asyncio.timeout(10):
        responses = await asyncio.gather(*(post(client, upstream) for _ in range(count)))
    assert [r.status for r in responses] == [200] * count
    assert len(upstream.conns) == count


async def test_a_status_line_without_a_reason_has_none_on_a_reused_connection(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    async def answer(conn: Conn, request: bytes) -> None:
        reason = b" Not Found" if len(conn.requests) == 1 else b""
        conn.writer.write(b"HTTP/1.1 404%s\r\nContent-Length: 0\r\n\r\n" % reason)

    upstream = await upstream_with(answer)
    reasons = []
    for _ in range(2):
        response = await post(client, upstream)
        reasons.append(response.reason)
        assert await body_of(response) == b""
        response.release()
    assert reasons == ["Not Found", ""] and len(upstream.conns) == 1


async def test_a_fragment_is_never_sent(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    upstream = await upstream_with(replying(OK))
    (await post(client, upstream, "/a?b=1#frag", method="GET", body=b"")).release()
    assert upstream.requests[0].startswith(b"GET /a?b=1 HTTP/1.1\r\n")
    assert b"Content-Length" not in upstream.requests[0], "a GET without a body has none"


async def test_interim_responses_are_skipped(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    upstream = await upstream_with(replying(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK))
    response = await post(client, upstream)
    assert response.status == 200 and "Link" not in response.headers
    assert await body_of(response) == b"ok"


async def test_a_head_answer_has_no_body_and_its_connection_carries_nothing_more(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    upstream = await upstream_with(replying(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"))
    async with asyncio.timeout(5):
        response = await post(client, upstream, method="HEAD", body=b"")
        assert response.headers["Content-Length"] == "10"
        assert await body_of(response) == b""
    response.release()
    await asyncio.wait_for(upstream.conns[0].closed.wait(), 5)


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
], ids=["connection-close", "http-1.0"])
async def test_an_answer_that_ends_its_connection_is_not_reused(
        raw: bytes, client: UpstreamClient,
        upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    upstream = await upstream_with(replying(raw))
    for _ in range(2):
        response = await post(client, upstream)
        assert await body_of(response) == b"ok"
        response.release()
    assert len(upstream.conns) == 2


async def test_a_body_without_a_length_ends_when_the_upstream_closes(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    async def answer(conn: Conn, request: bytes) -> None:
        conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhel")
        await conn.writer.drain()
        await asyncio.sleep(0.05)
        conn.writer.write(b"lo")
        conn.writer.close()

    upstream = await upstream_with(answer)
    response = await post(client, upstream)
    assert await body_of(response) == b"hello"
    assert response.content.at_eof()


async def test_a_body_cut_short_gives_every_byte_that_came_then_raises(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    async def answer(conn: Conn, request: bytes) -> None:
        conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await conn.writer.drain()
        conn.writer.close()

    upstream = await upstream_with(answer)
    response = await post(client, upstream)
    got = b""
    with pytest.raises(Disconnected):
        async for piece in response.content:
            got += piece
    assert got == b"0123456789"


async def test_a_reader_that_falls_behind_holds_the_upstream_back_and_the_connection_recovers(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    """While the reader takes nothing, the client stops reading: the upstream's writes back
    up instead of the proxy buffering the body. Once read, the connection is reused."""
    size = 256 * HIGH_WATER  # far beyond what the kernel buffers of both sockets hold
    written = asyncio.Event()

    async def answer(conn: Conn, request: bytes) -> None:
        if len(conn.requests) > 1:
            conn.writer.write(OK)
            return
        conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        conn.writer.write(b"x" * size)
        await conn.writer.drain()
        written.set()

    upstream = await upstream_with(answer)
    response = await post(client, upstream)
    await asyncio.sleep(0.3)
    assert not written.is_set(), "the whole body was taken in although nobody read it"
    assert upstream.conns[0].writer.transport.get_write_buffer_size() > 0
    async with asyncio.timeout(10):
        assert len(await body_of(response)) == size
    response.release()
    async with asyncio.timeout(5):
        again = await post(client, upstream)
        assert await body_of(again) == b"ok"
    assert len(upstream.conns) == 1


async def test_a_header_holding_a_line_break_is_refused_before_anything_is_sent(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    upstream = await upstream_with(replying(OK))
    with pytest.raises(ProtocolError):
        await post(client, upstream, headers=CIMultiDict({"X-A": "a\r\nX-Injected: 1"}))
    assert upstream.requests == []


async def test_a_response_head_that_never_ends_is_refused(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    async def endless(conn: Conn, request: bytes) -> None:
        conn.writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(20_000):  # short headers, 600 KB of them: bounded, never ending
            conn.writer.write(b"X-H%d: %s\r\n" % (i, b"v" * 20))
            if i % 100 == 0:
                await conn.writer.drain()
                await asyncio.sleep(0)

    upstream = await upstream_with(endless)
    with pytest.raises(ProtocolError):
        async with asyncio.timeout(10):
            await post(client, upstream)


async def test_idle_connections_are_closed_after_the_keepalive_time(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "KEEPALIVE_SECONDS", 0.2)
    upstream = await upstream_with(replying(OK))
    response = await post(client, upstream)
    await body_of(response)
    response.release()
    await asyncio.wait_for(upstream.conns[0].closed.wait(), 5)
    again = await post(client, upstream)
    assert await body_of(again) == b"ok"
    assert len(upstream.conns) == 2


async def test_a_cancelled_request_closes_its_connection(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    async def silent(conn: Conn, request: bytes) -> None:
        if len(upstream.conns) > 1:
            conn.writer.write(OK)

    upstream = await upstream_with(silent)
    task = asyncio.create_task(post(client, upstream))
    async with upstream.arrived:
        await upstream.arrived.wait_for(lambda: len(upstream.requests) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(upstream.conns[0].closed.wait(), 5)
    assert (await post(client, upstream)).status == 200


async def test_the_upstream_closing_before_the_answer_is_disconnected(
        client: UpstreamClient, upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    async def hang_up(conn: Conn, request: bytes) -> None:
        conn.writer.close()

    upstream = await upstream_with(hang_up)
    with pytest.raises(Disconnected):
        await post(client, upstream)


@pytest.mark.parametrize(("method", "sent_again"), [("GET", True), ("DELETE", True),
                                                    ("POST", False)])
async def test_a_pooled_connection_closed_under_a_request_resends_only_idempotent_ones(
        method: str, sent_again: bool, client: UpstreamClient,
        upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    """The upstream answers once per connection and then closes it without saying so, just as
    the next request goes out on it (the race every keep-alive client meets)."""
    async def once_per_connection(conn: Conn, request: bytes) -> None:
        if len(conn.requests) == 1:
            conn.writer.write(OK)
        else:
            conn.writer.close()

    upstream = await upstream_with(once_per_connection)
    first = await post(client, upstream, method=method, body=b"")
    assert await body_of(first) == b"ok"
    first.release()
    if sent_again:
        again = await post(client, upstream, method=method, body=b"")
        assert await body_of(again) == b"ok"
        assert len(upstream.requests) == 3 and len(upstream.conns) == 2
    else:
        with pytest.raises(Disconnected):
            await post(client, upstream, method=method, body=b"")
        assert len(upstream.requests) == 2, "a POST is never sent twice"


async def test_nothing_listening_is_connect_failed(client: UpstreamClient) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectFailed):
        await client.request(f"http://127.0.0.1:{port}", "GET", "/", CIMultiDict(), b"")


async def test_a_finished_request_leaves_nothing_for_the_cyclic_collector(
        upstream_with: Callable[[Answer], Awaitable[RawUpstream]]) -> None:
    """A serving process runs the cyclic collector rarely (proxy/runtime/process_tuning.py):
    a connection, its parser or a body left in a reference cycle would outlive its request."""
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    upstream = await upstream_with(replying(closing))
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        client = UpstreamClient(connect_timeout=5)
        for _ in range(3):
            response = await post(client, upstream)
            assert await body_of(response) == b"ok"
            response.release()
        await client.close()
        async with asyncio.timeout(5):
            while sum(not c.closed.is_set() for c in upstream.conns):
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # connection_lost runs a loop iteration after the close
        del client, response
        gc.collect()
        left = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()
    assert not left & {"Connection", "Body", "UpstreamResponse", "HttpResponseParser"}, left


@pytest.mark.parametrize(("base", "origin"), [
    ("http://127.0.0.1:8080", Origin("127.0.0.1", 8080, False, "127.0.0.1:8080", "")),
    ("https://x.openai.azure.com/", Origin("x.openai.azure.com", 443, True,
                                           "x.openai.azure.com", "")),
    ("https://x.example.com:8443/gw/", Origin("x.example.com", 8443, True,
                                              "x.example.com:8443", "/gw")),
    ("http://[::1]:9000/p", Origin("::1", 9000, False, "[::1]:9000", "/p")),
])
def test_a_base_url_names_where_requests_go_and_what_they_say(base: str, origin: Origin) -> None:
    assert Origin.of(base) == origin
