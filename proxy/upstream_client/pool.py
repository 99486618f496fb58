"""The proxy's HTTP/1.1 client for its upstreams: keep-alive connections pooled per origin.

It does what a reverse proxy needs and nothing else: the request goes out with exactly the
headers given (plus `Host` and the body's `Content-Length`), the response comes back as it
was sent (never decompressed, no cookies kept, no redirects followed), and the body is handed
on piece by piece. There is no connection limit: every concurrent stream needs its own
connection, and a limit would silently queue streams behind each other. Why the proxy has its
own client instead of aiohttp's: bench/README.md, "Third pass". What goes out, and when a
connection is used again: docs/upstream-http.md.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

from multidict import CIMultiDict
from yarl import URL

from proxy.upstream_client.connection import Connection, UpstreamResponse
from proxy.upstream_client.errors import (
    CertificateInvalid,
    ConnectFailed,
    Disconnected,
    ProtocolError,
    TLSFailed,
)

KEEPALIVE_SECONDS = 15.0
"""A pooled connection idle this long is closed (before the upstream's own idle limit)."""
DNS_TTL_SECONDS = 300.0
READ_BUFFER_BYTES = 256 << 10
"""What one read from an upstream may bring (as much as uvloop's and asyncio's own reads)."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""RFC 9110 9.2.2; POST (every completion) is not, and is never sent twice."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a base URL's requests go, and what they say about it."""

    host: str
    port: int
    tls: bool
    host_header: str
    prefix: str
    """The base URL's own path (without a trailing "/"), put before every target."""

    @classmethod
    def of(cls, base: str) -> Origin:
        url = URL(base, encoded=True)
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise ValueError(f"not an http(s) URL: {base!r}")
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        return cls(host=url.raw_host, port=port, tls=tls,
                   host_header=url.host_port_subcomponent or url.raw_host,
                   prefix=url.raw_path.rstrip("/"))


class UpstreamClient:
    """Sends requests to upstreams over pooled connections; `close()` when done."""

    def __init__(self, *, connect_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._ssl: ssl.SSLContext | None = None  # made on the first TLS connection
        self._origins: dict[str, Origin] = {}
        self._idle: dict[Origin, dict[Connection, None]] = {}
        self._addresses: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        # One buffer for every connection's reads (`Connection.get_buffer`): the loop is one
        # thread and each read is parsed before the next one starts.
        self.read_buffer = memoryview(bytearray(READ_BUFFER_BYTES))

    async def request(self, base: str, method: str, target: str, headers: CIMultiDict[str],
                      body: bytes) -> UpstreamResponse:
        """Send `method target` to the upstream at `base`; return once its response's head
        arrived. `target` is the path and query exactly as they go out; a fragment, which
        names a part of the answer for the client alone, never goes (RFC 9110 4.2.5)."""
        if "#" in target:
            target = target.partition("#")[0]
        origin = self._origins.get(base)
        if origin is None:
            origin = self._origins[base] = Origin.of(base)
        data = _request_bytes(origin, method, target, headers, body)
        head = method == "HEAD"
        connection = self._pooled(origin)
        if connection is not None:
            try:
                return await _exchange(connection, data, head)
            except Disconnected:
                # A pooled connection the upstream closed as the request went out: an
                # idempotent request may be sent again (RFC 9112 9.3.1), once, on a new one.
                if method not in IDEMPOTENT_METHODS:
                    raise
        return await _exchange(await self._connect(origin), data, head)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in list(self._idle.values()):
            for connection in list(idle):
                connection.close()
        self._idle.clear()

    # ------------------------------------------------------------------------ the pool

    def put(self, connection: Connection) -> None:
        """A connection whose response ended cleanly, ready for another request."""
        if self._closed:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.setdefault(connection.origin, {})[connection] = None
        if self._sweeper is None:
            self._sweeper = loop.call_later(KEEPALIVE_SECONDS, self._sweep)

    def discard(self, connection: Connection) -> None:
        idle = self._idle.get(connection.origin)
        if idle is not None:
            idle.pop(connection, None)

    def _pooled(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection, _ = idle.popitem()  # the most recently used: the likeliest to be alive
            if connection.usable():
                return connection
            connection.close()
        return None

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        oldest = loop.time() - KEEPALIVE_SECONDS
        left = False
        for idle in self._idle.values():
            for connection in [c for c in idle if c.idle_since <= oldest]:
                del idle[connection]
                connection.close()
            left = left or bool(idle)
        self._sweeper = loop.call_later(KEEPALIVE_SECONDS / 2, self._sweep) if left else None

    # ---------------------------------------------------------------------- connecting

    async def _connect(self, origin: Origin) -> Connection:
        context = self._context() if origin.tls else None
        last: OSError | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                for address in await self._resolve(origin):
                    try:
                        return await self._open(origin, address, context)
                    except ssl.SSLCertVerificationError as exc:
                        raise CertificateInvalid(f"the TLS certificate of {origin.host} could "
                                                 "not be verified", exc) from exc
                    except ssl.SSLError as exc:
                        raise TLSFailed(f"the TLS handshake with {origin.host} failed") from exc
                    except TimeoutError:
                        raise
                    except OSError as exc:  # refused, unreachable: the next address
                        last = exc
        except socket.gaierror as exc:
            raise ConnectFailed(f"cannot resolve {origin.host}") from exc
        raise ConnectFailed(f"cannot connect to {origin.host}") from last

    async def _open(self, origin: Origin, address: str,
                    context: ssl.SSLContext | None) -> Connection:
        connection = Connection(self, origin)
        await asyncio.get_running_loop().create_connection(
            lambda: connection, address, origin.port, ssl=context,
            server_hostname=origin.host if context is not None else None)
        return connection

    async def _resolve(self, origin: Origin) -> list[str]:
        """The origin's addresses, looked up at most every DNS_TTL_SECONDS."""
        key = (origin.host, origin.port)
        loop = asyncio.get_running_loop()
        cached = self._addresses.get(key)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self._addresses[key] = (loop.time() + DNS_TTL_SECONDS, addresses)
        return addresses

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            # The system's trust store (OpenSSL reads SSL_CERT_FILE / SSL_CERT_DIR too).
            self._ssl = ssl.create_default_context()
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl


async def _exchange(connection: Connection, data: bytes, head: bool) -> UpstreamResponse:
    """Send one request on `connection` and wait for its answer's head; the connection is
    closed if that fails or is cancelled (it may hold half a request or half an answer)."""
    try:
        return await connection.send(data, head=head)
    except BaseException:
        connection.close()
        raise


def _request_bytes(origin: Origin, method: str, target: str, headers: CIMultiDict[str],
                   body: bytes) -> bytes:
    lines = [f"{method} {origin.prefix}{target} HTTP/1.1\r\nHost: {origin.host_header}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if body or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    head = "".join(lines)
    # The line breaks written (the first entry holds two), or a name or value carried one.
    breaks = len(lines) + 1
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise ProtocolError("a request header holds a line break")
    data = head.encode("utf-8", "surrogateescape")
    return data + body if body else data
