"""The one request handler: attribute, forward, observe, record.

Per request: read the body (bounded), find the deployment and the client (bounded label values),
ask the router which upstream to try, maybe ask for exact usage, send upstream (retrying once if
an old api-version rejects the usage option), and, while nothing has reached the client yet,
move on to the next candidate when the answer is one to fail over on. Then relay the response
through `forward.relay` with the right tap, and record the finished `Exchange` in the metrics
and the access log, exactly once, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from proxy.config import Config, UpstreamConfig
from proxy.observe.tap import tap_for
from proxy.relay import ratelimit
from proxy.relay.alias import body_with_model, path_with_deployment
from proxy.relay.errors import all_cooling_down, azure_error
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
from proxy.relay.watchdog import Watch, Watchdog
from proxy.routing.router import Attempts, Candidate, Failure, Router
from proxy.runtime.lifecycle import LIFECYCLE
from proxy.telemetry.accesslog import log_access
from proxy.telemetry.metrics import Metrics
from proxy.vocabulary import ERROR_CONNECT, ERROR_TIMEOUT, UNKNOWN_CLIENT

# nginx's code for "client closed request": the client left before any response was sent.
CLIENT_CLOSED = 499
_MAX_ERROR_BODY = 1 << 20
UPSTREAM_HEADER = "x-aoai-proxy-upstream"
ATTEMPTS_HEADER = "x-aoai-proxy-attempts"
_FAILOVER_ERRORS = frozenset({ERROR_CONNECT, ERROR_TIMEOUT})
_SPILLOVER_FROM = "x-ms-spillover-from"
# A failed-over answer's body is read this long at most: the next candidate must not wait for
# a slow error body.
_DRAIN_SECONDS = 0.5

Answer = tuple[aiohttp.ClientResponse, bytes | None]
"""An upstream response and, when it was read to check it, its body."""


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
    router: Router
    upstreams: dict[str, UpstreamConfig]
    """Upstream name -> its configuration."""


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
            response: web.StreamResponse = _unauthorized(state, ex)
        else:
            response = await _handle(request, state, ex)
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
    ex.deployment_name = name = named if named is not None else intent.model
    if name is not None and name in state.router.table:
        ex.deployment = name
    ex.stream = intent.stream
    state.metrics.started(ex)

    watch = state.watchdog.watch()
    answer = await _first_answer(request, state, ex, body, intent, watch)
    if isinstance(answer, web.Response):
        return answer
    response, prefetched = answer
    _note_headers(ex, response)
    tap = tap_for(response.headers, operation=ex.operation,
                  max_event_bytes=limits.max_event_bytes)
    rewrite = UsageStripper(limits.max_event_bytes) if ex.usage_injected and \
        prefetched is None and is_event_stream(response.headers) else None
    try:
        return await relay(request, response, ex, tap=tap, rewrite=rewrite, watch=watch,
                           prefetched=prefetched, idle=state.config.timeouts.idle,
                           extra_headers=served_by(ex))
    finally:
        ex.observation = tap.finish()


async def _first_answer(request: web.Request, state: ProxyState, ex: Exchange, body: bytes,
                        intent: Intent, watch: Watch) -> web.Response | Answer:
    """Ask the candidates in turn until an answer is one the client should get.

    Nothing has gone to the client yet, so an answer given up on is simply released: the
    client never sees it, and the next candidate gets the body exactly as first sent.
    """
    attempts = state.router.start(ex.deployment_name)
    candidate = attempts.next()
    if candidate is None:
        ex.cooling_wait = ex.retry_after = attempts.wait()
        ex.status = 429
        return all_cooling_down(ex.deployment_name or "", ex.cooling_wait)
    while True:
        upstream = state.upstreams[candidate.upstream]
        ex.upstream, ex.attempt_started = upstream.name, time.perf_counter()
        try:
            response, prefetched = await _attempt(request, state, ex, upstream,
                                                  candidate.deployment, body, intent, watch)
        except UpstreamError as exc:
            ex.attempts.append((upstream.name, exc.error_type))
            failure = Failure(exc.error_type) if exc.error_type in _FAILOVER_ERRORS else None
            following = _fail_over(ex, attempts, candidate, failure)
            if following is None:
                ex.status = (err := error_response(exc, ex, upstream.name)).status
                return err
        else:
            ex.attempts.append((upstream.name, str(response.status)))
            wait = ratelimit.retry_after(response.headers) if response.status == 429 else None
            following = _fail_over(ex, attempts, candidate,
                                   state.router.classify_status(response.status, wait))
            if following is None:
                return response, prefetched
            await _discard(response)
        candidate = following


async def _discard(response: aiohttp.ClientResponse) -> None:
    """Drop an answer given up on; its (small) error body is read first so the connection
    goes back to the pool instead of a new one being opened for the next failover."""
    size = 0
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for piece in response.content.iter_any():
                size += len(piece)
                if size > _MAX_ERROR_BODY:
                    break
    except (TimeoutError, aiohttp.ClientError):
        size = _MAX_ERROR_BODY + 1
    except asyncio.CancelledError:  # the client left meanwhile
        response.close()
        raise
    if size > _MAX_ERROR_BODY:
        response.close()
    else:
        response.release()


def _fail_over(ex: Exchange, attempts: Attempts, candidate: Candidate,
               failure: Failure | None) -> Candidate | None:
    """The candidate to try after `candidate` answered `failure`, if any (None: the answer
    goes to the client)."""
    if failure is None:
        return None
    attempts.failed(candidate, failure)
    following = attempts.next()
    if following is not None:
        ex.failovers.append((candidate.upstream, failure.reason))
    return following


async def _attempt(request: web.Request, state: ProxyState, ex: Exchange,
                   upstream: UpstreamConfig, deployment: str, body: bytes, intent: Intent,
                   watch: Watch) -> Answer:
    """One upstream's answer, with its own credentials and its own name for the deployment."""
    headers = upstream_request_headers(
        request.headers, api_key=upstream.api_key, client_ip=request.remote,
        scheme=request.scheme)
    target = _origin_form(request)
    if deployment != (ex.deployment_name or ""):
        if _deployment_in_path(request.path) is not None:
            target = path_with_deployment(target, deployment)
        else:
            body, intent = _with_model(body, intent, deployment)
    memory_key = (upstream.name, ex.deployment_name or "", ex.api_version or "")
    injected = _usage_body(state, ex.operation, intent, memory_key)
    ex.usage_injected = injected is not None
    base = state.bases[upstream.name]

    async def ask(data: bytes) -> aiohttp.ClientResponse:
        return await send(state.session, base=base, method=request.method,
                          raw_path_qs=target, headers=headers, body=data,
                          response_timeout=state.config.timeouts.response, watch=watch)

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
    return response, prefetched


def _with_model(body: bytes, intent: Intent, model: str) -> tuple[bytes, Intent]:
    """The v1 body naming `model`, and the intent to inject usage into that body."""
    aliased = body_with_model(body, model)
    if intent.body is None:
        return aliased, intent
    return aliased, dataclasses.replace(intent, raw=aliased, body={**intent.body, "model": model})


def served_by(ex: Exchange) -> dict[str, str]:
    """Where the response came from: the upstream (absent when the proxy answered itself)
    and how many upstream attempts it took."""
    headers = {ATTEMPTS_HEADER: str(len(ex.attempts))}
    if ex.upstream is not None:
        headers[UPSTREAM_HEADER] = ex.upstream
    return headers


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
    # Azure's PTU spillover names the deployment a request spilled from in a response header
    # (docs/routing-wire.md); its exact spelling varies, so any `x-ms-spillover-from*` counts.
    ex.spillover = any(k.lower().startswith(_SPILLOVER_FROM) for k in headers)
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
