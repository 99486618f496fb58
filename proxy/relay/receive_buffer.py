"""Socket reads into one reused buffer, for the proxy's connections on both sides.

asyncio reads a plain `Protocol`'s socket with `sock.recv(256 KiB)`, and its TLS layer with
`SSLObject.read(256 KiB)`: each read allocates 256 KiB and then shrinks the block to what
arrived, a few hundred bytes for an SSE event. Under glibc's malloc that pattern fragments
the heap without bound: in the soak (mixed streams and faults) the memory in use stayed flat
while the heap's free space, and so RSS, grew steadily. Depending on the process's history,
the same read instead costs an mmap, an mremap and a munmap. The figures are in
bench/README.md ("Measurements behind design choices").

A `BufferedProtocol` is handed a buffer instead: asyncio reads into it with `recv_into` (or
`SSLObject.read(n, buffer)`), and the bytes that arrived are copied out into a bytes object
of exactly their size. aiohttp's protocols are plain ones, so the proxy uses subclasses of
them that add the buffered interface; everything else about them is aiohttp's.
"""

from __future__ import annotations

import asyncio
import functools
import threading

import aiohttp
from aiohttp import web
from aiohttp.client_proto import ResponseHandler
from aiohttp.web_protocol import RequestHandler

SIZE = 256 * 1024
"""As large as asyncio's own reads, so a burst of events still arrives in one piece."""

_local = threading.local()


def _buffer() -> memoryview:
    # Per thread: the buffer is filled with the GIL released, so event loops in two threads
    # must not share one. Within a loop, each read is copied out before the next begins.
    try:
        view: memoryview = _local.view
    except AttributeError:
        view = _local.view = memoryview(bytearray(SIZE))
    return view


class CopiedReads:
    """Mixin for an aiohttp protocol: take reads through a shared buffer, pass on copies."""

    __slots__ = ()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_buffer()[:nbytes].tobytes())  # type: ignore[attr-defined]


class UpstreamProtocol(CopiedReads, ResponseHandler, asyncio.BufferedProtocol):
    """aiohttp's client protocol; `asyncio.BufferedProtocol` comes last so that every method
    aiohttp's classes define (`eof_received` among them) keeps resolving to theirs."""


class DownstreamProtocol(CopiedReads, RequestHandler, asyncio.BufferedProtocol):
    """aiohttp's server protocol, as `UpstreamProtocol` is its client one."""

    __slots__ = ()


def connector(**kwargs: object) -> aiohttp.TCPConnector:
    """A `TCPConnector` whose connections read through the shared buffer."""
    made = aiohttp.TCPConnector(**kwargs)  # type: ignore[arg-type]
    # aiohttp has no public hook for the protocol class; `_factory` is what it calls for
    # every new connection (tests/integration/test_receive_buffer.py fails if that changes).
    made._factory = functools.partial(UpstreamProtocol, loop=made._loop)  # type: ignore[assignment]
    return made


class TCPSite(web.BaseSite):
    """`web.TCPSite`, but its connections read through the shared buffer."""

    __slots__ = ("_host", "_port", "_reuse_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 reuse_port: bool = False) -> None:
        super().__init__(runner)
        self._host, self._port, self._reuse_port = host, port, reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # set by runner.setup(), which start() requires
        self._server = await asyncio.get_running_loop().create_server(
            functools.partial(_downstream, server), self._host, self._port,
            backlog=self._backlog, reuse_port=self._reuse_port or None)


def _downstream(server: web.Server) -> DownstreamProtocol:
    """aiohttp's handler, built with the runner's own settings, then retyped: the subclass
    adds no state (empty `__slots__`), so the new class changes only which methods run."""
    handler = server()
    handler.__class__ = DownstreamProtocol
    return handler  # type: ignore[return-value]
