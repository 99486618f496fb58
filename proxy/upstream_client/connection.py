"""One keep-alive HTTP/1.1 connection to an upstream: one request at a time, its response
parsed by llhttp (through httptools) as the bytes arrive.

A connection goes back to its pool only when its last response ended exactly where its framing
said (Content-Length or the last chunk), the upstream did not ask to close, and nothing arrived
after it: bytes beyond a response would otherwise become the start of the next one. The
HTTP/1.1 rules behind this: docs/upstream-http.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.upstream_client.body import Body
from proxy.upstream_client.errors import BodyBroken, Disconnected, ProtocolError

if TYPE_CHECKING:
    from proxy.upstream_client.pool import Origin, UpstreamClient

MAX_FIELD_BYTES = 8190
"""A header name or value, or the reason phrase, may not be longer (aiohttp's limit too)."""
MAX_HEAD_BYTES = 64 << 10
"""All of a response's status line and headers (Azure's are about 2 KB)."""

_NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamResponse:
    """An upstream's response: status, reason and headers, and its body as it arrives.

    `release()` once done with it (the connection goes back to the pool if it can), or
    `close()` to drop the connection; either is safe to call more than once."""

    __slots__ = ("_connection", "content", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: CIMultiDictProxy[str], content: Body,
                 connection: Connection) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content = content
        self._connection: Connection | None = connection

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.release()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class Connection(asyncio.BufferedProtocol):
    """The protocol of one upstream connection; also the parser's callback target.

    A buffered protocol: the event loop reads into the client's one read buffer
    (`UpstreamClient.read_buffer`) and the parser copies out what it keeps. Without it, uvloop's
    TLS layer reads every record with `SSLObject.read(256 KiB)`, a fresh 256 KiB block per read
    (and asyncio's loop every plain read too): see proxy/runtime/process_tuning.py."""

    def __init__(self, client: UpstreamClient, origin: Origin) -> None:
        self.client = client
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        # Body pieces as the parser finds them, handed to the body once per read: the parser
        # calls this list's own append, no Python function per chunk.
        self._arrived: list[bytes] = []
        self.on_body: Callable[[bytes], None] = self._arrived.append
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._body: Body | None = None
        self._busy = False  # a request was sent and its response has not ended
        self._head = False  # the request was HEAD: the response has no body, whatever it says
        self._heading = False  # the response's status line and headers are being read
        self._complete = False
        self._reusable = True
        self._eof_ends_body = False
        self._paused = False
        self._head_bytes = 0
        self._reason = ""
        self._headers: list[tuple[bytes, bytes]] = []

    # ---------------------------------------------------------------------------- requests

    def send(self, data: bytes, *, head: bool) -> asyncio.Future[UpstreamResponse]:
        """Write one whole request; the future resolves with its response's head."""
        assert self.transport is not None and not self._busy
        self._busy, self._head, self._heading = True, head, True
        self._complete, self._eof_ends_body = False, False
        self._head_bytes = 0
        self._reason = ""  # a status line may have none: never the last response's
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return waiter

    def release(self) -> None:
        """The response's reader is done: pool the connection if its response ended cleanly."""
        if self._complete and self._reusable and self.transport is not None \
                and not self.transport.is_closing():
            self._busy = False
            self.resume()  # its body may have ended while reading was paused
            self.client.put(self)
        else:
            self.close()

    def close(self) -> None:
        self._reusable = False
        if self.transport is not None:
            self.transport.close()

    def usable(self) -> bool:
        return self._reusable and self.transport is not None and not self.transport.is_closing()

    def pause(self) -> None:
        if self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()

    # ---------------------------------------------------------------------- asyncio events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, but has its methods.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.client.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # The buffer is shared by every connection: it is read again only after this returns,
        # and the parser hands on copies (bytes) of what it found in it.
        self.data_received(self.client.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        parser = self._parser
        if not self._busy or self._complete or parser is None:
            # Bytes nobody asked for: this connection cannot carry another request.
            self._reusable = False
            if not self._busy:
                self.close()
            return
        if self._heading:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES + len(data):
                self._fail(ProtocolError("the upstream's response head is too large"))
                return
        error: Exception | None = None
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            error = ProtocolError("the upstream switched protocols")
        except httptools.HttpParserError as exc:
            if not self._heading:
                error = BodyBroken("the upstream broke off the response")
            elif isinstance(exc.__context__, ProtocolError):  # raised by a callback of ours
                error = exc.__context__
            else:
                error = ProtocolError("the upstream sent an invalid response")
        self._deliver()
        if error is not None:
            if self._complete:  # garbage after a whole response: the response stands
                self.close()
            else:
                self._fail(error)

    def _deliver(self) -> None:
        """Hand the body what this read brought; end it if its last byte came."""
        arrived, body = self._arrived, self._body
        if body is None:
            arrived.clear()
            return
        if arrived:
            body.extend(arrived)
            arrived.clear()
        if self._complete:
            self._body = None
            body.finish()

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._reusable = False
        if not self._busy:
            self.client.discard(self)
        elif self._heading:
            self._fail(Disconnected("the upstream closed the connection"))
        elif not self._complete:
            if self._eof_ends_body and exc is None:
                self._end_body()
            else:
                self._fail(Disconnected("the upstream broke off the response"))
        # The parser holds this protocol's bound methods: let go of it, and of the body.
        self._parser = None
        self._body = None
        self.transport = None

    def _fail(self, error: Exception) -> None:
        self._reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        elif self._body is not None:
            self._body.fail(error)
            self._body = None
        if self.transport is not None:
            self.transport.close()

    def _end_body(self) -> None:
        self._complete = True
        if self._body is not None:
            self._body.finish()
            self._body = None

    # ------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        if self._complete:
            self._reusable = False  # a second response to one request

    def on_status(self, reason: bytes) -> None:
        if len(reason) > MAX_FIELD_BYTES:
            raise ProtocolError("the upstream's reason phrase is too long")
        self._reason = reason.decode("utf-8", "surrogateescape")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) > MAX_FIELD_BYTES or len(value) > MAX_FIELD_BYTES:
            raise ProtocolError("an upstream response header is too long")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        raw, self._headers = self._headers, []
        if 100 <= status < 200 and status != 101:
            return  # an interim response (100 Continue, 103 Early Hints): the answer follows
        headers: CIMultiDict[str] = CIMultiDict(
            (n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
            for n, v in raw)
        self._heading = False
        body = self._body = Body(self)
        response = UpstreamResponse(status, self._reason, CIMultiDictProxy(headers), body, self)
        if self._head:
            # No body follows a HEAD response, whatever its headers say; the parser cannot be
            # told so, so this connection carries nothing after it.
            self._reusable = False
            self._end_body()
        elif status not in _NO_BODY_STATUSES and "Content-Length" not in headers \
                and "chunked" not in headers.get("Transfer-Encoding", "").lower():
            self._eof_ends_body = True  # the body ends when the upstream closes
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_message_complete(self) -> None:
        if self._heading:
            return  # the end of an interim response
        parser = self._parser
        if parser is not None and not parser.should_keep_alive():
            self._reusable = False
        self._complete = True  # the body ends in `_deliver`, once this read's pieces are in
