"""The one request handler: attribute, forward, observe, record.

Per request: read the body (bounded), find the deployment and the client (bounded label values),
maybe ask for exact usage, send upstream (retrying once if an old api-version rejects the
usage option), relay the response through `forward.relay` with the right tap, then record the
finished `Exchange` in the metrics and the access log, exactly once, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from proxy.config import Config, UpstreamConfig
from proxy.observe.tap import tap_for
from proxy.relay import ratelimit
from proxy.relay.errors import azure_error
from proxy.relay.exchange import Exchange
from proxy.relay.forward import UpstreamError, error_response, relay, send
from proxy.relay.headers import credential_digest, is_event_stream, upstream_request_headers
from proxy.relay.operation import CHAT_COMPLETIONS, Operation, operation_of
from proxy.relay.usage import (
    Intent,
    RejectionMemory,
    read_intent,
    rejects_stream_options,
    with_usage,
)
from proxy.relay.usage_strip import UsageStripper
from proxy.relay.watchdog import Watchdog
from proxy.runtime.lifecycle import LIFECYCLE
from proxy.telemetry.accesslog import log_access
from proxy.telemetry.metrics import OTHER_DEPLOYMENT, UNKNOWN_CLIENT, Metrics

# nginx's code for "client closed request": the client left before any response was sent.
CLIENT_CLOSED = 499
_MAX_ERROR_BODY = 1 << 20


@dataclass
class ProxyState:
    config: Config
    metrics: Metrics
    session: aiohttp.ClientSession
    bases: dict[str, str]
    """Upstream name -> base URL (the built-in simulator's is known only once it listens)."""
    clients: dict[str, str]
    """sha256 of a client key -> client name."""
    rejections: RejectionMemory
    access_log: logging.Logger | None
    watchdog: Watchdog
    """Guards every request's upstream deadlines (`timeouts.response`, `timeouts.idle`)."""

    def upstream_for(self, deployment: str | None) -> UpstreamConfig:
        for upstream in self.config.upstreams:
            if deployment in upstream.deployments:
                return upstream
        return self.config.upstreams[0]


STATE = web.AppKey("state", ProxyState)


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
            return _unauthorized(state, ex)
        return await _handle(request, state, ex)
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


async def _handle(request: web.Request, state: ProxyState, ex: Exchange) -> web.StreamResponse:
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
    named = _deployment_in_path(request.path)
    intent = read_intent(body, need_model=named is None)
    ex.deployment_name = named if named is not None else intent.model
    upstream = state.upstream_for(ex.deployment_name)
    if ex.deployment_name in upstream.deployments:
        ex.deployment = ex.deployment_name or OTHER_DEPLOYMENT
    ex.stream = intent.stream
    state.metrics.started(ex)

    headers = upstream_request_headers(
        request.headers, api_key=upstream.api_key, client_ip=request.remote,
        scheme=request.scheme, keep_content_length=False)
    memory_key = (upstream.name, ex.deployment_name or "", ex.api_version or "")
    injected = _usage_body(state, ex.operation, intent, memory_key)
    ex.usage_injected = injected is not None
    base = state.bases[upstream.name]
    watch = state.watchdog.watch()

    async def ask(data: bytes) -> aiohttp.ClientResponse:
        return await send(state.session, base=base, method=request.method,
                          raw_path_qs=_origin_form(request), headers=headers, body=data,
                          response_timeout=state.config.timeouts.response, watch=watch)

    try:
        response = await ask(injected if injected is not None else body)
        prefetched = None
        if injected is not None and response.status == 400:
            prefetched = await _read_error_body(response.content, _MAX_ERROR_BODY,
                                                state.config.timeouts.idle)
            if rejects_stream_options(response.status, prefetched):
                response.release()
                state.rejections.add(memory_key)
                ex.usage_injected, prefetched = False, None
                response = await ask(body)
    except UpstreamError as exc:
        ex.status = (err := error_response(exc, ex, upstream.name)).status
        return err
    _note_headers(ex, response)
    tap = tap_for(response.headers, operation=ex.operation,
                  max_event_bytes=limits.max_event_bytes)
    rewrite = UsageStripper(limits.max_event_bytes) if ex.usage_injected and \
        prefetched is None and is_event_stream(response.headers) else None
    try:
        return await relay(request, response, ex, tap=tap, rewrite=rewrite, watch=watch,
                           prefetched=prefetched, idle=state.config.timeouts.idle)
    finally:
        ex.observation = tap.finish()


def _unauthorized(state: ProxyState, ex: Exchange) -> web.Response:
    """Never forwarded, and the body is not even read: the caller is not one of ours."""
    named = _deployment_in_path(ex.path)
    if named is not None and named in state.config.deployments:
        ex.deployment = named
    state.metrics.started(ex)
    ex.status = 401
    return azure_error(401, "401", "Access denied due to a missing or invalid key for this "
                       "proxy. Send the key this proxy issued to your app as `api-key` or as "
                       "an `Authorization: Bearer` token.")


def _usage_body(state: ProxyState, operation: Operation, intent: Intent,
                memory_key: tuple[str, str, str]) -> bytes | None:
    # Only chat completions take `stream_options`; a Responses stream always carries its usage.
    if not (state.config.inject_stream_usage and intent.stream and not intent.wants_usage):
        return None
    if operation != CHAT_COMPLETIONS or memory_key in state.rejections:
        return None
    return with_usage(intent)


def _note_headers(ex: Exchange, response: aiohttp.ClientResponse) -> None:
    headers = response.headers
    ex.upstream_request_id = headers.get("apim-request-id") or headers.get("x-request-id")
    ex.ratelimit_remaining = ratelimit.remaining(headers)
    if response.status == 429:
        ex.retry_after = ratelimit.retry_after(headers)


def _origin_form(request: web.Request) -> str:
    """The target as sent, or only the path and query of an absolute-form target: the host
    is always the configured upstream's."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


def _deployment_in_path(path: str) -> str | None:
    """`/openai/deployments/{name}/...` -> name; other forms carry it in the body's `model`."""
    parts = path.split("/", 4)
    if len(parts) >= 4 and parts[1] == "openai" and parts[2] == "deployments" and parts[3]:
        return parts[3]
    return None


async def _read_error_body(content: aiohttp.StreamReader, limit: int, idle: float) -> bytes:
    """The start of an error body, read to its end or to `limit` bytes, as it arrives.

    `read(n)` would return only what is buffered, cutting a body that arrives in pieces. The
    relay sends this first and then whatever follows, so a body over `limit`, a stall past
    `idle` or a broken-off body is relayed (and reported) as the rest of the response is.
    """
    parts: list[bytes] = []
    size = 0
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        while size < limit and not content.at_eof():
            async with asyncio.timeout(idle):
                piece = await content.readany()
            if not piece:
                break
            parts.append(piece)
            size += len(piece)
    return b"".join(parts)


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
