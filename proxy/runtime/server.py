"""Serving: start listeners, run until SIGINT/SIGTERM, then shut down gracefully.

Graceful shutdown, in order:
1. `/readyz` turns 503 while everything still serves, for `shutdown.grace` seconds, so load
   balancers stop sending new requests (a second signal skips the wait);
2. the listeners close: no new connections; idle keep-alive connections are closed;
3. in-flight requests get `shutdown.drain_timeout` seconds to finish; those still running
   are then cancelled (their upstream responses closed);
4. the upstream session and the built-in simulator, if any, are closed; exit status 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy import __version__
from proxy.app import REGISTRY, create_admin_app, create_app
from proxy.config import Config
from proxy.runtime import event_loop
from proxy.runtime.lifecycle import Lifecycle
from proxy.runtime.process_tuning import tune_for_serving

log = logging.getLogger("aoai_stream_proxy")


async def start(app: web.Application, host: str, port: int, *, reuse_port: bool = False,
                shutdown_timeout: float = 60.0,
                client_timeout: float = 60.0) -> tuple[web.AppRunner, int]:
    """Start serving `app`; returns the runner and the port actually bound (port 0 = any)."""
    # handler_cancellation: when a client disconnects, its handler is cancelled at once, which
    # closes the upstream response instead of waiting for the next chunk to fail to write.
    # keepalive_timeout: aiohttp arms it when a connection opens and re-arms it only after a
    # response, so it also bounds a client that sends its request headers slowly.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=shutdown_timeout, keepalive_timeout=client_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port)
    await site.start()
    return runner, runner.addresses[0][1]


async def serve(config: Config, *, reuse_port: bool = False,
                exposition: CollectorRegistry | None = None,
                registry: CollectorRegistry | None = None) -> None:
    """Run the proxy (and its admin listener) until a signal, then drain."""
    lifecycle = Lifecycle()
    app = create_app(config, registry, exposition=exposition, lifecycle=lifecycle)
    drain = config.shutdown.drain_timeout
    runner, port = await start(app, config.listen.host, config.listen.port,
                               reuse_port=reuse_port, shutdown_timeout=_AFTER_DRAIN,
                               client_timeout=config.timeouts.client)
    runners = [runner]
    log.info("aoai-stream-proxy %s listening on http://%s:%d (event loop: %s)", __version__,
             config.listen.host, port, event_loop.name_of(asyncio.get_running_loop()))
    if config.admin is not None:
        admin = create_admin_app(config, exposition or app[REGISTRY], lifecycle)
        admin_runner, admin_port = await start(admin, config.admin.host, config.admin.port,
                                               reuse_port=reuse_port,
                                               client_timeout=config.timeouts.client)
        runners.append(admin_runner)
        log.info("metrics and health on http://%s:%d", config.admin.host, admin_port)
    tune_for_serving()
    signals = _signal_queue()
    try:
        received = await signals.get()
        log.info("%s: draining (readyz 503 for %.3g s, then up to %.3g s for in-flight "
                 "requests)", received.name, config.shutdown.grace, drain)
        lifecycle.draining = True
        try:
            await asyncio.wait_for(signals.get(), config.shutdown.grace)
        except TimeoutError:
            pass
        await _drain(runner, lifecycle, drain)
    finally:
        for each in runners:
            await each.cleanup()
        _restore_signals()
    log.info("stopped")


# aiohttp's own connection shutdown waits its timeout twice over; by the time it runs, the
# drain below has already waited and cancelled, so it only needs to close what is left.
_AFTER_DRAIN = 1.0


async def _drain(runner: web.AppRunner, lifecycle: Lifecycle, timeout: float) -> None:
    """Stop accepting, give in-flight requests `timeout` seconds, then cancel the rest."""
    for site in list(runner.sites):
        await site.stop()
    if lifecycle.active:
        log.info("waiting up to %.3g s for %d in-flight requests", timeout,
                 len(lifecycle.active))
        _, pending = await asyncio.wait(set(lifecycle.active), timeout=timeout)
        if pending:
            log.warning("drain timeout: cutting %d requests still in flight", len(pending))
            lifecycle.cutting = True
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=_AFTER_DRAIN)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _signal_queue() -> asyncio.Queue[signal.Signals]:
    queue: asyncio.Queue[signal.Signals] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, queue.put_nowait, sig)
    return queue


def _restore_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in _SIGNALS:
        loop.remove_signal_handler(sig)


async def wait_for_signal() -> None:
    """For the simulator and the demo: run until the first SIGINT/SIGTERM."""
    try:
        await _signal_queue().get()
    finally:
        _restore_signals()
