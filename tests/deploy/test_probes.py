"""The Deployment's probes and the ServiceMonitor's scrape reach real endpoints of the proxy,
started the way the container starts it: its arguments, the ConfigMap's config (moved to
127.0.0.1 and free ports, nothing else changed) and the Secret's variables, with the
simulator standing in for Azure."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Running
from tests.deploy.conftest import StartShipped
from tests.deploy.k8s import (
    DEPLOY,
    NAME,
    Obj,
    container,
    container_port,
    one,
    service_target,
)
from tests.faults.faultkit import CHAT_PATH, DONE, STREAM_BODY, raw_exchange, request_bytes

pytestmark = pytest.mark.e2e
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


async def get(port: int, path: str) -> tuple[int | None, bytes]:
    client = await raw_exchange(port, request_bytes("GET", path), timeout=5)
    return client.response.status, bytes(client.response.body)


async def test_probes_scrape_and_traffic_reach_the_running_proxy(
        renderings: dict[Path, list[Obj]], start_shipped: StartShipped,
        start_simulator: Callable[..., Awaitable[Running]]) -> None:
    objects = renderings[DEPLOY / "overlays" / "keda"]
    simulator = await start_simulator()
    proxy = await start_shipped(objects, {"AZURE_OPENAI_ENDPOINT": simulator.url})

    for probe in PROBES:
        action = container(objects)[probe]["httpGet"]
        port = proxy.port_for(container_port(objects, action["port"]))
        status, body = await get(port, action["path"])
        assert status == 200, f"{probe} {action['path']} on port {action['port']}: {body!r}"

    # Apps reach the proxy through the Service's `http` port; the Secret's endpoint is used.
    http_port = proxy.port_for(service_target(objects, "http"))
    answer = await raw_exchange(http_port, request_bytes(
        "POST", CHAT_PATH, body=STREAM_BODY,
        headers=[("Content-Type", "application/json"), ("api-key", "k")]))
    assert answer.response.status == 200, bytes(answer.response.body)[:300]
    assert bytes(answer.response.body).endswith(DONE)

    # What Prometheus scrapes: the ServiceMonitor's Service port and path.
    (endpoint,) = one(objects, "ServiceMonitor", NAME)["spec"]["endpoints"]
    status, body = await get(proxy.port_for(service_target(objects, endpoint["port"])),
                             endpoint.get("path", "/metrics"))
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    requests = sum(s.value for s in families["aoai_proxy_requests"].samples
                   if s.name == "aoai_proxy_requests_total")
    assert requests == 1, "the scrape shows the request just served"
    # Every metric the KEDA trigger asks Prometheus for is in the scrape.
    (trigger,) = one(objects, "ScaledObject", NAME)["spec"]["triggers"]
    for metric in re.findall(r"\b(aoai_proxy_[a-z_]+)\b", trigger["metadata"]["query"]):
        assert metric in families, metric
