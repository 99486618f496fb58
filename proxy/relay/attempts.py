"""The failover attempt loop: the first upstream answer the client should get.

The candidates the router offers are tried in turn, each with its own credentials and its own
name for the deployment, maybe asking for exact usage (and asking again without it if an old
api-version rejects the option). While nothing has reached the client yet, an answer to fail
over on is released and the next candidate gets the body exactly as first sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

from aiohttp import web

from proxy.config import UpstreamConfig
from proxy.relay import ratelimit
from proxy.relay.alias import body_with_model, deployment_in_path, path_with_deployment
from proxy.relay.errors import all_cooling_down
from proxy.relay.exchange import Exchange
from proxy.relay.forward import UpstreamError, error_response, send
from proxy.relay.headers import upstream_request_headers
from proxy.relay.operation import CHAT_COMPLETIONS, Operation
from proxy.relay.state import ProxyState
from proxy.relay.usage import Intent, rejects_stream_options, with_usage
from proxy.relay.watchdog import Watch
from proxy.routing.router import Attempts, Candidate, Failure
from proxy.upstream_client import Body, UpstreamHTTPError, UpstreamResponse
from proxy.vocabulary import ERROR_CONNECT, ERROR_TIMEOUT

_MAX_ERROR_BODY = 1 << 20
_FAILOVER_ERRORS = frozenset({ERROR_CONNECT, ERROR_TIMEOUT})
# A failed-over answer's body is read this long at most: the next candidate must not wait for
# a slow error body.
_DRAIN_SECONDS = 0.5

Answer = tuple[UpstreamResponse, bytes | None]
"""An upstream response and, when it was read to check it, its body."""


async def first_answer(request: web.Request, state: ProxyState, ex: Exchange, body: bytes,
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


async def _discard(response: UpstreamResponse) -> None:
    """Drop an answer given up on; its (small) error body is read first so the connection
    goes back to the pool instead of a new one being opened for the next failover."""
    size = 0
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for piece in response.content:
                size += len(piece)
                if size > _MAX_ERROR_BODY:
                    break
    except (TimeoutError, UpstreamHTTPError):
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
        if deployment_in_path(request.path) is not None:
            target = path_with_deployment(target, deployment)
        else:
            body, intent = _with_model(body, intent, deployment)
    memory_key = (upstream.name, ex.deployment_name or "", ex.api_version or "")
    injected = _usage_body(state, ex.operation, intent, memory_key)
    ex.usage_injected = injected is not None
    base = state.bases[upstream.name]
    timeouts = state.config.timeouts
    # Waiting for the headers is silence from the upstream too, so `idle` bounds it as well.
    response_timeout = min(timeouts.response, timeouts.idle)

    async def ask(data: bytes) -> UpstreamResponse:
        return await send(state.client, base=base, method=request.method,
                          raw_path_qs=target, headers=headers, body=data,
                          response_timeout=response_timeout, watch=watch)

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


def _usage_body(state: ProxyState, operation: Operation, intent: Intent,
                memory_key: tuple[str, str, str]) -> bytes | None:
    # Only chat completions take `stream_options`; a Responses stream always carries its usage.
    if not (state.config.inject_stream_usage and intent.stream and not intent.wants_usage):
        return None
    if operation != CHAT_COMPLETIONS or memory_key in state.rejections:
        return None
    return with_usage(intent)


def _origin_form(request: web.Request) -> str:
    """The target as sent, or only the path and query of an absolute-form target: the host
    is always the configured upstream's."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


async def _read_error_body(content: Body, limit: int, idle: float) -> bytes:
    """The start of an error body, read to its end or to `limit` bytes, as it arrives.

    `read(n)` would return only what is buffered, cutting a body that arrives in pieces. The
    relay sends this first and then whatever follows, so a body over `limit`, a stall past
    `idle` or a broken-off body is relayed (and reported) as the rest of the response is.
    """
    parts: list[bytes] = []
    size = 0
    with contextlib.suppress(TimeoutError, UpstreamHTTPError):
        while size < limit and not content.at_eof():
            async with asyncio.timeout(idle):
                piece = await content.readany()
            if not piece:
                break
            parts.append(piece)
            size += len(piece)
    return b"".join(parts)
