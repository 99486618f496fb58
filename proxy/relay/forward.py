"""The byte mover: sends a request upstream and relays the response to the client.

It knows HTTP and nothing else: no JSON, no SSE rules, no metric names. Each piece the upstream
sends is written to the client as soon as it arrives, then handed to the tap (a copy, after
the write, so observing never holds the client back). What happened on the wire is written into
the `Exchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from aiohttp import hdrs, web
from multidict import CIMultiDict

from proxy.relay.errors import azure_error
from proxy.relay.exchange import Exchange
from proxy.relay.headers import client_response_headers, is_event_stream
from proxy.relay.watchdog import Watch
from proxy.upstream_client import (
    BodyBroken,
    CertificateInvalid,
    ConnectFailed,
    Disconnected,
    UpstreamClient,
    UpstreamHTTPError,
    UpstreamResponse,
)
from proxy.vocabulary import ERROR_CONNECT, ERROR_PROTOCOL, ERROR_RESET, ERROR_TIMEOUT


class Tap(Protocol):
    """Sees a copy of every response piece after it was sent. Must never raise."""

    def feed(self, data: bytes) -> None: ...


class Rewriter(Protocol):
    """Changes what the client receives (used only to drop a chunk the proxy itself caused)."""

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class UpstreamError(Exception):
    """The upstream could not be asked: no connection, no answer in time, or a broken answer."""

    def __init__(self, error_type: str, detail: str) -> None:
        super().__init__(detail)
        self.error_type = error_type


async def send(
    client: UpstreamClient,
    *,
    base: str,
    method: str,
    raw_path_qs: str,
    headers: CIMultiDict[str],
    body: bytes,
    response_timeout: float,
    watch: Watch,
) -> UpstreamResponse:
    """Send one request upstream and wait for its response headers."""
    watch.expect_response(response_timeout)
    try:
        # The path and query go out exactly as the client wrote them.
        response = await client.request(base, method, raw_path_qs, headers, body)
    except asyncio.CancelledError as exc:
        if not watch.expired():
            raise
        raise UpstreamError(ERROR_TIMEOUT, "no response from the upstream in time") from exc
    except TimeoutError as exc:
        raise UpstreamError(ERROR_TIMEOUT, "no response from the upstream in time") from exc
    except CertificateInvalid as exc:
        raise UpstreamError(ERROR_CONNECT, _certificate_problem(exc)) from exc
    except ConnectFailed as exc:  # TLS failures included
        raise UpstreamError(ERROR_CONNECT, str(exc)) from exc
    except Disconnected as exc:
        raise UpstreamError(ERROR_RESET, "the upstream closed the connection") from exc
    except UpstreamHTTPError as exc:
        raise UpstreamError(ERROR_PROTOCOL, "the upstream sent an invalid response") from exc
    finally:
        watch.clear()
    if response.status < 100:  # the parser accepts any three digits; "000" is no HTTP status
        response.close()
        raise UpstreamError(ERROR_PROTOCOL, "the upstream sent an invalid status")
    return response


def _certificate_problem(exc: CertificateInvalid) -> str:
    """Names OpenSSL's reason (e.g. "self-signed certificate"), the fix a user needs first."""
    cause = exc.cause
    reason = getattr(cause, "verify_message", "") or getattr(cause, "reason", "") or ""
    detail = f" ({reason})" if reason else ""
    return f"{exc}{detail}"


async def relay(
    request: web.Request,
    upstream: UpstreamResponse,
    ex: Exchange,
    *,
    tap: Tap,
    watch: Watch,
    idle: float,
    rewrite: Rewriter | None = None,
    prefetched: bytes | None = None,
    clock: Callable[[], float] = time.perf_counter,
    extra_headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Relay `upstream` to the client piece by piece; `prefetched` is the start of its body,
    already read (the rest, if any, follows it); `extra_headers` are the proxy's own, replacing
    any of the same name from upstream."""
    stream = is_event_stream(upstream.headers)
    ex.stream = ex.stream or stream
    ex.status = upstream.status
    headers = client_response_headers(upstream.headers, stream=stream)
    if extra_headers:
        headers.update(extra_headers)
    whole = _arrived_whole(request, upstream) if not (stream or prefetched is not None
                                                      or rewrite is not None) else None
    response = web.StreamResponse(
        status=upstream.status, reason=upstream.reason, headers=headers) if whole is None \
        else web.Response(status=upstream.status, reason=upstream.reason, headers=headers,
                          body=whole)
    # The response holds its own copy: these are not kept for the whole stream.
    del headers, extra_headers
    try:
        await response.prepare(request)
        if prefetched is not None:
            await _write(response, ex, prefetched, clock)
            tap.feed(prefetched)
        if whole is None:
            # After a prefetched start, whatever of the body was not read yet (usually nothing).
            await _pump(upstream, response, ex, tap, rewrite, clock, watch, idle)
        # A whole body leaves here, with the headers, in one write: no relay loop for it.
        await response.write_eof()
        if whole:
            ex.first_byte_at = clock()
            tap.feed(whole)
    except ConnectionResetError:
        # A write to the client failed before aiohttp noticed the connection was gone: return
        # rather than raise (aiohttp would log a raised one as an unhandled error).
        ex.client_disconnected = True
        upstream.close()
    except asyncio.CancelledError:
        # The client went away (a failed write, or aiohttp cancelling the handler because the
        # connection was lost): the upstream is closed below so it stops generating at once.
        ex.client_disconnected = True
        upstream.close()
        raise
    except UpstreamError as exc:
        ex.error_type = exc.error_type
        upstream.close()
        await _send_held_tail(response, rewrite)
        _end_uncleanly(request)
    else:
        upstream.release()
    finally:
        ex.ended_at = clock()
    return response


def _arrived_whole(request: web.Request, upstream: UpstreamResponse) -> bytes | None:
    """The body of a non-stream response that came whole with its headers (the usual small
    JSON answer), else None: relayed piece by piece as it arrives.

    Only a body framed by Content-Length, so the client gets the framing the upstream sent;
    never to HEAD or for a status without a body, whose Content-Length describes no bytes.
    """
    status = upstream.status
    if request.method == "HEAD" or status < 200 or status in (204, 304):
        return None
    if hdrs.CONTENT_LENGTH not in upstream.headers or not upstream.content.is_eof():
        return None
    return upstream.content.read_nowait()


async def _pump(upstream: UpstreamResponse, response: web.StreamResponse, ex: Exchange,
                tap: Tap, rewrite: Rewriter | None, clock: Callable[[], float],
                watch: Watch, idle: float) -> None:
    # This loop runs once per upstream piece of every stream: methods are bound once and the
    # first-byte bookkeeping happens only until the first byte is out.
    write, feed = response.write, tap.feed
    transform = rewrite.feed if rewrite is not None else None
    watch.expect_pieces(idle)
    try:
        async for piece in upstream.content:
            watch.pieces += 1
            out = transform(piece) if transform is not None else piece
            if out:
                watch.writing = True
                await write(out)
                watch.writing = False
                if ex.first_byte_at is None:
                    ex.first_byte_at = clock()
            feed(piece)
            # Not held while the stream waits for its next piece (most of an open stream's life).
            del piece, out
    except asyncio.CancelledError as exc:
        if not watch.expired():
            raise
        raise UpstreamError(ERROR_TIMEOUT, "the upstream went silent") from exc
    except (Disconnected, BodyBroken) as exc:
        raise UpstreamError(ERROR_RESET, "the upstream broke off the response") from exc
    except UpstreamHTTPError as exc:
        raise UpstreamError(ERROR_PROTOCOL, "the upstream sent an invalid response") from exc
    finally:
        watch.clear()
    if rewrite is not None:
        tail = rewrite.flush()
        if tail:
            await _write(response, ex, tail, clock)


async def _write(response: web.StreamResponse, ex: Exchange, data: bytes,
                 clock: Callable[[], float]) -> None:
    await response.write(data)
    if ex.first_byte_at is None and data:
        ex.first_byte_at = clock()


async def _send_held_tail(response: web.StreamResponse, rewrite: Rewriter | None) -> None:
    """A broken-off stream still gives the client every byte received, the partial event a
    rewriter was holding included."""
    tail = rewrite.flush() if rewrite is not None else b""
    if tail:
        with contextlib.suppress(ConnectionResetError):
            await response.write(tail)


def _end_uncleanly(request: web.Request) -> None:
    """Close the client connection without ending the body, as the upstream did to us.

    The client must learn the response broke off (an incomplete chunked body), not receive a
    clean end it would take for a complete answer. What was already written is flushed first.
    """
    if request.transport is not None:
        request.transport.close()


def error_response(error: UpstreamError, ex: Exchange, upstream_name: str) -> web.Response:
    """The proxy's own answer when the upstream could not be asked at all."""
    ex.error_type = error.error_type
    if error.error_type == ERROR_TIMEOUT:
        return azure_error(504, "GatewayTimeout",
                           f"The upstream {upstream_name!r} did not answer in time.")
    return azure_error(502, "BadGateway",
                       f"The upstream {upstream_name!r} could not be reached: {error}.")

