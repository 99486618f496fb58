"""Fixtures for the Kubernetes manifests: `kubectl`, `promtool`, every rendering, and the proxy
started from what the Deployment runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import Config, load_config
from tests.conftest import require_binary
from tests.deploy.k8s import (
    DEPLOY,
    Obj,
    for_test,
    kustomizations,
    render,
    serve_args,
    shipped_config,
)
from tests.faults.faultkit import ProxyProcess, RawClient, free_port, raw_exchange, request_bytes


@pytest.fixture(scope="session")
def kubectl() -> str:
    return require_binary("kubectl", "Debian: apt-get install kubectl")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool", "Debian: apt-get install prometheus")


@pytest.fixture(scope="session")
def renderings(kubectl: str) -> dict[Path, list[Obj]]:
    """`kubectl kustomize` of every kustomization under deploy/kubernetes, by directory."""
    return {directory: render(kubectl, directory) for directory in kustomizations()}


@pytest.fixture(scope="session")
def default_objects(renderings: dict[Path, list[Obj]]) -> list[Obj]:
    """What `kubectl apply -k deploy/kubernetes` creates."""
    return renderings[DEPLOY]


@dataclass
class ShippedProxy:
    """The proxy started as the Deployment starts it, on the test's ports."""

    process: ProxyProcess
    ports: dict[int, int]
    """Shipped port number (container port) -> the port this test's process listens on."""
    config: Config

    def port_for(self, container_port: int) -> int:
        return self.ports[container_port]


StartShipped = Callable[..., Awaitable[ShippedProxy]]


@pytest.fixture
async def start_shipped(tmp_path: Path) -> AsyncIterator[StartShipped]:
    """Start `python3 -m proxy` with the container's arguments and the ConfigMap's config,
    changed only to listen on 127.0.0.1 with free ports; `sections` replace whole top-level
    config keys (a test says which and why). The Secret's variables come from `env`."""
    started: list[tuple[ProxyProcess, int]] = []

    async def _start(objects: list[Obj], env: dict[str, str], **sections: Any) -> ShippedProxy:
        text = shipped_config(objects)
        shipped = yaml.safe_load(text)
        ports = {shipped[key]["port"]: free_port() for key in ("listen", "admin")}
        path = tmp_path / f"shipped-{len(started)}.yaml"
        path.write_text(for_test(text, ports, **sections), encoding="utf-8")
        config = load_config(path, env)
        assert config.admin is not None
        process = ProxyProcess(path, env, config.listen.port)
        await process.start(*serve_args(objects))
        started.append((process, config.admin.port))
        await process.wait_ready("/readyz", port=config.admin.port)
        return ShippedProxy(process, ports, config)

    yield _start
    for client in list(RawClient.live):
        client.abort()
    RawClient.live.clear()
    for process, admin_port in reversed(started):
        await _stop_without_grace(process, admin_port)


async def _stop_without_grace(process: ProxyProcess, admin_port: int) -> None:
    """SIGTERM, and once it took effect (readyz 503) a second one, which skips the shipped
    15 s grace: no load balancer waits on a test's proxy. (Two signals sent at once would
    merge into one pending signal.)"""
    process.send_signal(signal.SIGTERM)
    for _ in range(100):
        if process.returncode is not None:
            break
        with contextlib.suppress(OSError):
            client = await raw_exchange(admin_port, request_bytes("GET", "/readyz"), timeout=1)
            if client.response.status == 503:
                break
        await asyncio.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    await process.stop()
