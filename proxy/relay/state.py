"""The proxy's per-app state: what every request is served with, built once at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from proxy.config import Config, UpstreamConfig
from proxy.relay.usage import RejectionMemory
from proxy.relay.watchdog import Watchdog
from proxy.routing.router import Router
from proxy.telemetry.metrics import Metrics
from proxy.upstream_client import UpstreamClient


@dataclass
class ProxyState:
    config: Config
    metrics: Metrics
    client: UpstreamClient
    """The one HTTP client every upstream request goes through."""
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
