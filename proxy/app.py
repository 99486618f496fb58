"""Builds the proxy's aiohttp applications: state, resources, routes.

The proxy app forwards everything except its own endpoints (`/healthz`, `/readyz`, metrics).
With `admin` configured, those endpoints move to a separate app on a private address.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from proxy.config import Config, UpstreamConfig
from proxy.relay import cors
from proxy.relay.errors import azure_error
from proxy.relay.handler import handle
from proxy.relay.state import STATE, ProxyState
from proxy.relay.usage import RejectionMemory
from proxy.relay.watchdog import Watchdog, tick_for
from proxy.routing.router import Router, mixed_credentials
from proxy.runtime.lifecycle import LIFECYCLE, Lifecycle
from proxy.telemetry.accesslog import access_logger
from proxy.telemetry.metrics import Metrics
from proxy.ui.routes import add_ui_routes
from proxy.upstream_client import UpstreamClient

log = logging.getLogger("aoai_stream_proxy")


REGISTRY = web.AppKey("registry", CollectorRegistry)


def create_app(config: Config, registry: CollectorRegistry | None = None, *,
               exposition: CollectorRegistry | None = None,
               lifecycle: Lifecycle | None = None,
               router: Router | None = None) -> web.Application:
    """The proxy. `registry` holds its metrics (tests give each app a fresh one);
    `exposition` is what `/metrics` serves (a multiprocess collector with workers);
    `router` lets tests drive routing's clock and random choices."""
    app = web.Application(client_max_size=config.limits.max_request_body_bytes)
    registry = registry if registry is not None else CollectorRegistry()
    app[REGISTRY] = registry
    app[LIFECYCLE] = lifecycle if lifecycle is not None else Lifecycle()
    router = router if router is not None else Router.from_upstreams(config.upstreams,
                                                                     config.failover)
    routes = [(d, c.upstream) for d, cs in router.table.items() if len(cs) > 1 for c in cs]
    metrics = Metrics(registry, config.deployments, [c.name for c in config.clients], routes)
    metrics.cooling.source = router.cooling
    if exposition is not None and exposition is not registry:
        # Cooldowns are this process's state, read at scrape time: not in multiprocess files.
        exposition.register(metrics.cooling)
    _warn_mixed_credentials(config)
    app.cleanup_ctx.append(_upstream_resources(config, metrics, router))
    if config.admin is None:
        _add_admin_routes(app, config, exposition or registry, app[LIFECYCLE])
    cors.install(app, config.cors)
    if config.ui:
        add_ui_routes(app, config)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def create_admin_app(config: Config, exposition: CollectorRegistry,
                     lifecycle: Lifecycle) -> web.Application:
    app = web.Application()
    app[LIFECYCLE] = lifecycle
    _add_admin_routes(app, config, exposition, lifecycle)
    return app


def _add_admin_routes(app: web.Application, config: Config, exposition: CollectorRegistry,
                      lifecycle: Lifecycle) -> None:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if lifecycle.draining:
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ready"})

    serve_metrics = make_aiohttp_handler(exposition)
    token = config.metrics.bearer_token
    expected = f"Bearer {token}".encode() if token else None

    async def metrics(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if expected is not None and not hmac.compare_digest(given, expected):
            return azure_error(401, "401", "A valid bearer token is required for metrics.")
        return await serve_metrics(request)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get(config.metrics.path, metrics)


def _warn_mixed_credentials(config: Config) -> None:
    for deployment in mixed_credentials(config.upstreams):
        log.warning("deployment %r has upstreams with an api_key and upstreams without one: "
                    "those without get the client's credentials, which work across resources "
                    "only for Entra ID tokens, not for resource keys", deployment)


def _upstream_resources(config: Config, metrics: Metrics,
                        router: Router) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        client = UpstreamClient(connect_timeout=config.timeouts.connect)
        runners: list[web.AppRunner] = []
        bases: dict[str, str] = {}
        watchdog = Watchdog(tick_for(config.timeouts.response, config.timeouts.idle))
        watchdog.start()
        try:
            for upstream in config.upstreams:
                if upstream.is_simulator:
                    runner, bases[upstream.name] = await _start_simulator(upstream)
                    runners.append(runner)
                else:
                    bases[upstream.name] = upstream.endpoint
            app[STATE] = ProxyState(
                config=config, metrics=metrics, client=client, bases=bases,
                clients={c.key_sha256: c.name for c in config.clients},
                rejections=RejectionMemory(), access_log=access_logger(config.access_log),
                watchdog=watchdog, router=router,
                upstreams={u.name: u for u in config.upstreams})
            yield
        finally:
            watchdog.stop()
            await client.close()
            for runner in runners:
                await runner.cleanup()

    return context


async def _start_simulator(upstream: UpstreamConfig) -> tuple[web.AppRunner, str]:
    # Imported here: a proxy in front of Azure never loads the simulator.
    from proxy.simulator import SimulatorConfig, create_simulator_app

    # The built-in simulator plays a realistic model (first token after 150 ms, then 20 ms
    # per token), so the demo's dashboards show what real streams look like.
    capacity = upstream.simulator
    served = tuple(dict.fromkeys(upstream.deployment_for(d) for d in upstream.deployments))
    config = SimulatorConfig(deployments=served or SimulatorConfig().deployments,
                             first_token_delay=0.15, token_delay=0.02,
                             rpm=capacity.rpm if capacity else None,
                             tpm=capacity.tpm if capacity else None)
    runner = web.AppRunner(create_simulator_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    log.warning("upstream %r is the built-in simulator on 127.0.0.1:%d (no Azure traffic)",
                upstream.name, port)
    return runner, f"http://127.0.0.1:{port}"
