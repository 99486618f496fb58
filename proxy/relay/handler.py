"""The one request handler: attribute, forward, observe, record.

Per request: read the body (bounded), find the deployment and the client (bounded label values),
get the first upstream answer the client should get (`attempts.first_answer`: the candidates in
turn, failing over while nothing has reached the client), relay it through `forward.relay` with
the right tap, and record the finished `Exchange` in the metrics and the access log, exactly
once, whatever happened.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from proxy.observe.tap import ResponseTap, tap_for
from proxy.relay import ratelimit
from proxy.relay.alias import deployment_in_path
from proxy.relay.attempts import first_answer
from proxy.relay.errors import azure_error
from proxy.relay.exchange import Exchange
from proxy.relay.forward import relay
from proxy.relay.headers import credential_digest, is_event_stream
from proxy.relay.operation import operation_of
from proxy.relay.state import STATE, ProxyState
from proxy.relay.usage import read_intent
from proxy.relay.usage_strip import UsageStripper
from proxy.relay.watchdog import Watch
from proxy.runtime.lifecycle import LIFECYCLE
from proxy.telemetry.accesslog import log_access
from proxy.upstream_client import UpstreamResponse
from proxy.vocabulary import UNKNOWN_CLIENT

# nginx's code for "client closed request": the client left before any response was sent.
CLIENT_CLOSED = 499
UPSTREAM_HEADER = "x-aoai-proxy-upstream"
ATTEMPTS_HEADER = "x-aoai-proxy-attempts"
_SPILLOVER_FROM = "x-ms-spillover-from"


class BodyTooLarge(Exception):
    pass


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    lifecycle = request.app[LIFECYCLE]
    task = asyncio.current_task()
    if task is not None:
        lifecycle.active.add(task)
    ex = Exchange(started=time.perf_counter(), wall_time=time.time(), method=request.method,
                  path=request.path, operation=operation_of(request.path),
                  api_version=request.query.get("api-version"))
    if state.clients:  # no configured clients: every caller is `unknown`, nothing to hash
        digest = credential_digest(request.headers)
        ex.client = state.clients.get(digest, UNKNOWN_CLIENT) if digest else UNKNOWN_CLIENT
    try:
        if state.config.require_client_auth and ex.client == UNKNOWN_CLIENT:
            response: web.StreamResponse = _unauthorized(state, ex)
        else:
            answer = await _answer(request, state, ex)
            if isinstance(answer, tuple):  # (tuple, not the response class: no ABC check)
                # Relayed from this frame: `_answer`'s is gone for the stream's lifetime.
                upstream, prefetched, watch = answer
                del answer
                tap, rewrite = _observers(state, ex, upstream, prefetched)
                try:
                    response = await relay(
                        request, upstream, ex, tap=tap, rewrite=rewrite, watch=watch,
                        prefetched=prefetched, idle=state.config.timeouts.idle,
                        extra_headers=served_by(ex))
                finally:
                    ex.observation = tap.finish()
            else:
                response = answer
        if not response.prepared:
            response.headers.update(served_by(ex))
        return response
    except asyncio.CancelledError:
        # Cancelled by aiohttp because the client went away, or by the drain at shutdown.
        ex.client_disconnected = not lifecycle.cutting
        if not ex.status:
            ex.status = CLIENT_CLOSED
        raise
    finally:
        lifecycle.active.discard(task)
        if ex.ended_at is None:
            ex.ended_at = time.perf_counter()
        state.metrics.record(ex)
        log_access(state.access_log, ex)


async def _answer(request: web.Request, state: ProxyState,
                  ex: Exchange) -> web.StreamResponse | tuple[UpstreamResponse,
                                                              bytes | None, Watch]:
    """The proxy's own answer, or the upstream answer to relay (with its prefetched body
    start and the request's watch)."""
    limits = state.config.limits
    try:
        body = await _read_body(request, limits.max_request_body_bytes,
                                state.config.timeouts.client)
    except BodyTooLarge:
        ex.status = 413
        return azure_error(413, "RequestEntityTooLarge", "The request body is larger than the "
                           f"proxy's limit of {limits.max_request_body_bytes} bytes.")
    except TimeoutError:
        ex.status = 408
        return azure_error(408, "RequestTimeout", "The request body did not arrive within "
                           f"{state.config.timeouts.client:g} seconds.")
    named = deployment_in_path(request.path)
    intent = read_intent(body, need_model=named is None)
    ex.deployment_name = name = named if named is not None else intent.model
    if name is not None and name in state.router.table:
        ex.deployment = name
    ex.stream = intent.stream
    state.metrics.started(ex)

    watch = state.watchdog.watch()
    answer = await first_answer(request, state, ex, body, intent, watch)
    if not isinstance(answer, tuple):
        return answer
    response, prefetched = answer
    _note_headers(ex, response)
    return response, prefetched, watch


def _observers(state: ProxyState, ex: Exchange, response: UpstreamResponse,
               prefetched: bytes | None) -> tuple[ResponseTap, UsageStripper | None]:
    """The tap for the response, and the stripper when the proxy asked for usage itself."""
    limits = state.config.limits
    tap = tap_for(response.headers, operation=ex.operation,
                  max_event_bytes=limits.max_event_bytes)
    rewrite = UsageStripper(limits.max_event_bytes) if ex.usage_injected and \
        prefetched is None and is_event_stream(response.headers) else None
    return tap, rewrite


def served_by(ex: Exchange) -> dict[str, str]:
    """Where the response came from: the upstream (absent when the proxy answered itself)
    and how many upstream attempts it took."""
    headers = {ATTEMPTS_HEADER: str(len(ex.attempts))}
    if ex.upstream is not None:
        headers[UPSTREAM_HEADER] = ex.upstream
    return headers


def _unauthorized(state: ProxyState, ex: Exchange) -> web.Response:
    """Never forwarded, and the body is not even read: the caller is not one of ours."""
    named = deployment_in_path(ex.path)
    if named is not None and named in state.config.deployments:
        ex.deployment = named
    state.metrics.started(ex)
    ex.status = 401
    return azure_error(401, "401", "Access denied due to a missing or invalid key for this "
                       "proxy. Send the key this proxy issued to your app as `api-key` or as "
                       "an `Authorization: Bearer` token.")


def _note_headers(ex: Exchange, response: UpstreamResponse) -> None:
    headers = response.headers
    ex.upstream_request_id = headers.get("apim-request-id") or headers.get("x-request-id")
    ex.ratelimit_remaining = ratelimit.remaining(headers)
    # Azure's PTU spillover names the deployment a request spilled from in a response header
    # (docs/routing-wire.md); its exact spelling varies, so any `x-ms-spillover-from*` counts.
    ex.spillover = any(k.lower().startswith(_SPILLOVER_FROM) for k in headers)
    if response.status == 429:
        ex.retry_after = ratelimit.retry_after(headers)


async def _read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    if not request.body_exists:
        return b""
    content = request.content
    if content.is_eof():
        # The whole body came with the headers (the usual case): nothing to wait for, so no
        # timer to arm and cancel on every request.
        body = content.read_nowait()
        if len(body) > limit:
            raise BodyTooLarge
        return body
    async with asyncio.timeout(timeout):
        return await _read_body_pieces(content, limit)


async def _read_body_pieces(content: aiohttp.StreamReader, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for piece in content.iter_any():
        size += len(piece)
        if size > limit:
            raise BodyTooLarge
        parts.append(piece)
    return b"".join(parts)
