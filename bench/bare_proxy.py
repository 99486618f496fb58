"""The floor of our stack: an aiohttp pass-through with no observer and no metrics.

`python3 -m bench.bare_proxy --port 8081 --upstream http://127.0.0.1:8000 [--uvloop]`

Same client-session settings as proxy/app.py (no pool limit, no decompression, no cookie jar)
and the same server settings as proxy/runtime/server.py (handler cancellation, no access log, the
garbage-collector tuning), so the difference between the two is what the proxy does per
request and per piece.

On asyncio's own loop it reads sockets the way aiohttp does by default, `recv(256 KiB)` per
read. glibc serves that 256 KiB block from the heap or with mmap depending on its mmap
threshold (25 us a read apart; the proxy pins the threshold low so the block never fragments
its heap: proxy/runtime/process_tuning.py), so the bare pass-through pins it high, at 1 MiB:
every run takes the cheap path, and bare is measured at its best (a benchmark run is too
short for the heap growth that costs a long-running server).

`--uvloop` runs it on uvloop (the `bare+uvloop` reference row: where the floor of the stack
moves with the loop); without it, asyncio's own loop, the baseline every target is held to.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import signal
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDictProxy
from yarl import URL

from proxy.runtime import event_loop
from proxy.runtime.process_tuning import pin_mmap_threshold, tune_for_serving

HOP_BY_HOP = frozenset(h.lower() for h in (
    hdrs.CONNECTION, "Keep-Alive", hdrs.PROXY_AUTHENTICATE, hdrs.PROXY_AUTHORIZATION, hdrs.TE,
    hdrs.TRAILER, hdrs.TRANSFER_ENCODING, hdrs.UPGRADE, hdrs.HOST, hdrs.CONTENT_LENGTH,
))
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
_NO_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})


def _end_to_end(headers: CIMultiDictProxy[str], *,
                keep_length: bool = False) -> list[tuple[str, str]]:
    """Without hop-by-hop headers; Content-Length only on responses (the body is re-sent)."""
    return [(k, v) for k, v in headers.items()
            if k.lower() not in HOP_BY_HOP or (keep_length and k.lower() == "content-length")]


async def handle(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    url = URL(request.app[UPSTREAM] + request.raw_path, encoded=True)
    async with request.app[SESSION].request(
        request.method, url, headers=_end_to_end(request.headers), data=body or None,
        allow_redirects=False, skip_auto_headers=_NO_AUTO_HEADERS,
    ) as upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=_end_to_end(upstream.headers, keep_length=True))
        await response.prepare(request)
        async for piece in upstream.content.iter_any():
            await response.write(piece)
        await response.write_eof()
    return response


def create_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _session(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=300),
        auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
    yield
    await app[SESSION].close()


async def serve(host: str, port: int, upstream: str) -> None:
    runner = web.AppRunner(create_app(upstream), handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    tune_for_serving()  # the proxy's process settings: only what it does per request differs
    _pin_mmap_threshold()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _pin_mmap_threshold() -> None:
    """glibc only (a C library without `mallopt` is left as it is)."""
    pin_mmap_threshold(1 << 20)
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    m_trim_threshold = -1  # malloc.h
    mallopt(m_trim_threshold, 2 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="scheme://host:port")
    parser.add_argument("--uvloop", action="store_true",
                        help="serve on uvloop (default: asyncio's own loop)")
    args = parser.parse_args()
    event_loop.run(serve(args.host, args.port, args.upstream),
                   "uvloop" if args.uvloop else "asyncio")


if __name__ == "__main__":
    main()
