"""The proxy's connections read through one reused buffer, and what they pass on is a copy.

Real sockets on 127.0.0.1, plain and TLS: both sides of the proxy (its server and its client
session) must take the buffered path, and every byte must arrive intact whatever the split.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from proxy.relay import receive_buffer
from proxy.runtime.server import start
from tests.conftest import tls_client_context, tls_server_context

BODY = os.urandom(3 * receive_buffer.SIZE + 12345)
"""Larger than the buffer, so one body takes several reads that reuse it."""


class Counted:
    """How many reads went through the shared buffer."""

    def __init__(self) -> None:
        self.reads = 0


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counted]:
    seen = Counted()
    original = receive_buffer.CopiedReads.buffer_updated

    def buffer_updated(self: receive_buffer.CopiedReads, nbytes: int) -> None:
        seen.reads += 1
        original(self, nbytes)

    monkeypatch.setattr(receive_buffer.CopiedReads, "buffer_updated", buffer_updated)
    yield seen


async def echo(request: web.Request) -> web.StreamResponse:
    """Sends back the request body in small pieces with pauses, then `BODY`."""
    received = await request.read()
    response = web.StreamResponse(headers={"X-Received": str(len(received)),
                                           "X-Protocol": type(request.protocol).__name__})
    await response.prepare(request)
    for offset in range(0, 2000, 100):
        await response.write(received[offset:offset + 100])
        await asyncio.sleep(0.001)
    await response.write(BODY)
    await response.write_eof()
    return response


@pytest.fixture
async def plain_upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/echo", echo)
    runner, port = await start(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def tls_upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_server_context())
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def round_trip(url: str, **kwargs: object) -> tuple[aiohttp.ClientResponse, list[bytes]]:
    request_body = os.urandom(2 * receive_buffer.SIZE + 7)
    pieces: list[bytes] = []
    async with aiohttp.ClientSession(connector=receive_buffer.connector()) as session:
        async with session.post(f"{url}/echo", data=request_body, **kwargs) as response:
            assert isinstance(response.connection.protocol,  # type: ignore[union-attr]
                              receive_buffer.UpstreamProtocol)
            async for piece in response.content.iter_any():
                pieces.append(piece)
    assert response.headers["X-Received"] == str(len(request_body))
    assert b"".join(pieces) == request_body[:2000] + BODY
    return response, pieces


async def test_both_sides_read_through_the_buffer_and_lose_no_byte(
        plain_upstream: str, counted: Counted) -> None:
    response, pieces = await round_trip(plain_upstream)
    assert response.headers["X-Protocol"] == receive_buffer.DownstreamProtocol.__name__
    # The server's reads of the request body and the client's of the response, at least.
    assert counted.reads >= 2 + len(BODY) // receive_buffer.SIZE
    assert len(pieces) > 1


async def test_tls_reads_take_the_buffer_too(tls_upstream: str, counted: Counted) -> None:
    # The client side only: the test server here is aiohttp's own TCPSite.
    await round_trip(tls_upstream, ssl=tls_client_context())
    assert counted.reads >= len(BODY) // receive_buffer.SIZE


def test_what_is_passed_on_is_a_copy_that_outlives_the_next_read() -> None:
    received: list[bytes] = []

    class Sink(receive_buffer.CopiedReads, asyncio.BufferedProtocol):
        def data_received(self, data: bytes) -> None:
            received.append(data)

    sink = Sink()
    for text in (b"data: one\n\n", b"data: two\n\n"):
        buffer = sink.get_buffer(-1)
        buffer[:len(text)] = text
        sink.buffer_updated(len(text))
    assert received == [b"data: one\n\n", b"data: two\n\n"]
    assert all(type(piece) is bytes for piece in received)
