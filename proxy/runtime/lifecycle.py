"""The proxy's lifecycle state, shared by the proxy app, the admin app and the server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Lifecycle:
    draining: bool = False
    """Shutting down: `/readyz` answers 503 so load balancers stop sending new requests."""
    cutting: bool = False
    """The drain timeout passed: requests still running are being cancelled by the proxy
    itself, which is not a client disconnect."""
    active: set[asyncio.Task[object]] = field(default_factory=set)
    """Handler tasks of requests in flight, so a drain can wait for them on its own clock."""


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
