"""Builds the proxy's aiohttp application: state, resources, routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from .accesslog import access_logger
from .config import Config, UpstreamConfig
from .handler import STATE, ProxyState, handle
from .metrics import Metrics
from .simulator import SimulatorConfig, create_simulator_app
from .usage import RejectionMemory

log = logging.getLogger("aoai_stream_proxy")
REGISTRY = web.AppKey("registry", CollectorRegistry)


def create_app(config: Config, registry: CollectorRegistry | None = None) -> web.Application:
    """The proxy as an application; `registry` lets tests (and workers) own their metrics."""
    app = web.Application(client_max_size=config.limits.max_request_body_bytes)
    registry = registry if registry is not None else CollectorRegistry()
    app[REGISTRY] = registry
    metrics = Metrics(registry, config.deployments, [c.name for c in config.clients])
    app.cleanup_ctx.append(_upstream_resources(config, metrics))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get(config.metrics.path, make_aiohttp_handler(registry))
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def _upstream_resources(config: Config, metrics: Metrics):  # type: ignore[no-untyped-def]
    async def context(app: web.Application) -> AsyncIterator[None]:
        session = _client_session(config)
        runners: list[web.AppRunner] = []
        bases: dict[str, str] = {}
        try:
            for upstream in config.upstreams:
                if upstream.is_simulator:
                    runner, bases[upstream.name] = await _start_simulator(upstream)
                    runners.append(runner)
                else:
                    bases[upstream.name] = upstream.endpoint
            app[STATE] = ProxyState(
                config=config, metrics=metrics, session=session, bases=bases,
                clients={c.key_sha256: c.name for c in config.clients},
                rejections=RejectionMemory(), access_log=access_logger(config.access_log))
            yield
        finally:
            await session.close()
            for runner in runners:
                await runner.cleanup()

    return context


def _client_session(config: Config) -> aiohttp.ClientSession:
    timeouts = config.timeouts
    return aiohttp.ClientSession(
        # No connection cap: every concurrent stream needs its own upstream connection, and a
        # pool limit would silently queue streams behind each other.
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=None, connect=timeouts.connect,
                                      sock_connect=timeouts.connect, sock_read=timeouts.idle),
        # What is forwarded must match the headers forwarded: never decompress.
        auto_decompress=False,
        # A proxy must not keep one client's cookies and send them with another's requests.
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


async def _start_simulator(upstream: UpstreamConfig) -> tuple[web.AppRunner, str]:
    deployments = upstream.deployments or SimulatorConfig().deployments
    runner = web.AppRunner(create_simulator_app(SimulatorConfig(deployments=deployments)),
                           access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    log.warning("upstream %r is the built-in simulator on 127.0.0.1:%d (no Azure traffic)",
                upstream.name, port)
    return runner, f"http://127.0.0.1:{port}"


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
