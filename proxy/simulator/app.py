"""The simulator as an aiohttp application: routes, middlewares, and a server to run it."""

from __future__ import annotations

import asyncio
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy

from .chat import chat_completions
from .checks import admit
from .config import SimulatorConfig
from .embeddings import embeddings
from .errors import Rejection, resource_not_found
from .hooks import SIM_STATS, EventGate, RecordedRequest
from .legacy import legacy_completions
from .options import SCENARIOS
from .resource import RESOURCE, Resource, json_response
from .responses import responses_create

_DEFAULTS: Final = SimulatorConfig()


def create_simulator_app(
    config: SimulatorConfig = _DEFAULTS, *, gate: EventGate | None = None
) -> web.Application:
    """Build the simulator: one simulated Azure OpenAI resource with ``config``."""
    resource = Resource(config, gate)
    app = web.Application(
        middlewares=[_record, _render_rejections], client_max_size=64 * 1024 * 1024
    )
    app[RESOURCE] = resource
    app[SIM_STATS] = resource.stats
    post = app.router.add_post
    post("/openai/deployments/{deployment}/chat/completions", chat_completions)
    post("/openai/v1/chat/completions", chat_completions)
    post("/openai/deployments/{deployment}/embeddings", embeddings)
    post("/openai/v1/embeddings", embeddings)
    post("/openai/deployments/{deployment}/completions", legacy_completions)
    post("/openai/v1/responses", responses_create)
    post("/openai/responses", responses_create)
    app.router.add_get("/openai/v1/models", _models)
    app.router.add_route("*", "/openai/{tail:.*}", _not_found)
    return app


async def serve_simulator(host: str, port: int, config: SimulatorConfig) -> None:
    """Serve the simulator on ``host:port`` until cancelled. Prints and logs nothing."""
    runner = web.AppRunner(create_simulator_app(config), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    stats = request.app[RESOURCE].stats
    body = await request.read()
    headers = CIMultiDictProxy(CIMultiDict(request.headers))
    stats.requests.append(RecordedRequest(request.method, request.path_qs, headers, body))
    return await handler(request)


@web.middleware
async def _render_rejections(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Rejection as rejection:
        resource = request.app[RESOURCE]
        headers = resource.headers(
            rejection.deployment, success=False, tokens_left=rejection.tokens_left
        )
        headers |= rejection.headers
        return json_response(rejection.status, rejection.body, headers)


async def _models(request: web.Request) -> web.StreamResponse:
    resource, _ = admit(request, SCENARIOS, "models")
    created = int(time.time())
    data = [
        {"created": created, "id": name, "object": "model", "owned_by": "system"}
        for name in resource.config.deployments
    ]
    headers = resource.headers(None, success=True)
    return json_response(200, {"data": data, "object": "list"}, headers)


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise resource_not_found()
