"""Distinctive secrets (client key, Azure key, metrics token) never show up anywhere a person
or another app can read: logs, access log, error bodies, response headers, /metrics, config
errors. Driven through successes, every error status the proxy produces, and faults."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.config import parse_config
from proxy.telemetry.accesslog import LOGGER_NAME
from tests.conftest import Running, SpawnProxy
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import (
    API_VERSION,
    STREAM_BODY,
    ProxyProcess,
    RawClient,
    RawRequest,
    eventually,
    free_port,
    port_of,
    request_bytes,
)

CLIENT_KEY = "cli-7Q9x-SECRET-client-key"
AZURE_KEY = "az-4Kd2-SECRET-azure-key"
METRICS_TOKEN = "mt-8Zp1-SECRET-metrics-token"
ENV = {"CLIENT_KEY": CLIENT_KEY, "AZ_KEY": AZURE_KEY, "METRICS_TOKEN": METRICS_TOKEN}
FORBIDDEN = (CLIENT_KEY, AZURE_KEY, METRICS_TOKEN, hashlib.sha256(CLIENT_KEY.encode()).hexdigest(),
             hashlib.sha256(AZURE_KEY.encode()).hexdigest())


def path(deployment: str) -> str:
    return f"/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"


def config_text(port: int, simulator: str, stall: str) -> str:
    upstream = {"api_key": "${AZ_KEY}"}
    return json.dumps({
        "listen": {"host": "127.0.0.1", "port": port},
        "upstreams": [
            {"name": "primary", "endpoint": simulator, "deployments": ["gpt-4o"], **upstream},
            {"name": "dead", "endpoint": f"http://127.0.0.1:{free_port()}",
             "deployments": ["gpt-dead"], **upstream},
            {"name": "stall", "endpoint": stall, "deployments": ["gpt-stall"], **upstream},
        ],
        "clients": [{"name": "app", "key": "${CLIENT_KEY}"}],
        "require_client_auth": True,
        "metrics": {"bearer_token": "${METRICS_TOKEN}"},
        "timeouts": {"response": 0.5, "idle": 0.5},
        "limits": {"max_request_body_bytes": 2000},
        "shutdown": {"grace": 0, "drain_timeout": 1},
        "access_log": True,
    })


KEYED = [("api-key", CLIENT_KEY), ("Content-Type", "application/json")]
SIM = "x-simulator"
TRAFFIC: list[tuple[str, str, list[tuple[str, str]], bytes]] = [
    ("POST", path("gpt-4o"), KEYED, STREAM_BODY),
    ("POST", path("gpt-4o"), [("Authorization", f"Bearer {CLIENT_KEY}")], b'{"messages":[]}'),
    ("POST", path("gpt-4o"), [("Content-Type", "application/json")], STREAM_BODY),  # 401
    ("POST", path("gpt-4o"), [("api-key", AZURE_KEY)], STREAM_BODY),  # 401, the Azure key
    ("POST", path("gpt-4o"), [("Authorization", f"Bearer {METRICS_TOKEN}")], STREAM_BODY),
    ("POST", path("gpt-4o"), KEYED, b"x" * 5000),  # 413
    ("POST", path("gpt-4o"), [*KEYED, (SIM, "scenario=rate_limit")], STREAM_BODY),  # 429
    ("POST", path("gpt-4o"), [*KEYED, (SIM, "scenario=server_error")], STREAM_BODY),  # 500
    ("POST", path("gpt-dead"), KEYED, STREAM_BODY),  # 502
    ("POST", path("gpt-stall"), KEYED, STREAM_BODY),  # 504
    ("POST", path("gpt-4o"), [*KEYED, (SIM, "scenario=disconnect")], STREAM_BODY),  # reset
    ("POST", path("gpt-4o"), [*KEYED, (SIM, "scenario=error_event")], STREAM_BODY),
    ("POST", f"http://127.0.0.1:1{path('gpt-4o')}", KEYED, STREAM_BODY),  # absolute-form
    ("GET", "/metrics", [], b""),
    ("GET", "/metrics", [("Authorization", "Bearer wrong")], b""),
    ("GET", "/metrics", [("Authorization", f"bearer {METRICS_TOKEN.upper()}")], b""),
    ("GET", "/healthz", [], b""),
    ("GET", "/readyz", [], b""),
]
STATUSES = {200, 401, 413, 429, 500, 502, 504}
FORWARDED = sum(not target.startswith(("/metrics", "/healthz", "/readyz"))
                for _, target, _, _ in TRAFFIC) + 1
"""Requests that get an access log line: TRAFFIC but the proxy's own endpoints (which get
none), and the client abort of `drive`."""


async def stall(request: RawRequest) -> None:
    await request.conn.hold(3)


async def drive(port: int) -> tuple[list[bytes], set[int]]:
    """Send all of TRAFFIC, a client abort mid-stream, and a /metrics scrape with the token;
    return every byte the clients received and the statuses seen."""
    seen: list[bytes] = []
    statuses: set[int] = set()
    for method, target, headers, body in TRAFFIC:
        client = await RawClient.connect(port)
        await client.send(request_bytes(method, target, body=body, headers=headers))
        await client.read_to_end(5)
        await client.aclose()
        seen.append(bytes(client.response.raw))
        statuses.add(client.response.status or 0)
    abort = await RawClient.connect(port)
    await abort.send(request_bytes("POST", path("gpt-4o"), body=STREAM_BODY, headers=[
        *KEYED, (SIM, "tokens=40; token_delay_ms=20")]))
    await abort.read_until(lambda r: b'"content"' in r.body, timeout=5)
    abort.abort()
    seen.append(bytes(abort.response.raw))
    scrape = await RawClient.connect(port)
    await scrape.send(request_bytes("GET", "/metrics", headers=[
        ("Authorization", f"Bearer {METRICS_TOKEN}")]))
    await scrape.read_to_end(5)
    await scrape.aclose()
    assert scrape.response.status == 200
    assert b"aoai_proxy_requests_total" in scrape.response.body
    seen.append(bytes(scrape.response.raw))
    return seen, statuses


def access_lines(caplog: pytest.LogCaptureFixture) -> int:
    # The handler sees each record twice (on the access logger and, propagated, on the root).
    return len({id(r) for r in caplog.records if r.name == LOGGER_NAME})


def leaks(texts: dict[str, bytes]) -> list[str]:
    return [f"{secret!r} in {where}" for where, text in texts.items() for secret in FORBIDDEN
            if secret.encode() in text]


async def test_secrets_never_leak_from_the_proxy_process(
        spawn_proxy: SpawnProxy, raw_upstream: StartRawUpstream,
        start_simulator: Callable[..., Awaitable[Running]]) -> None:
    simulator = await start_simulator()
    stalling = await raw_upstream(stall)
    process = await spawn_proxy(lambda port: config_text(port, simulator.url, stalling.url),
                                env=ENV)
    responses, statuses = await drive(process.port)
    # The abort's line comes once the proxy noticed the hang-up.
    await eventually(lambda: process.stdout.count(b"\n") >= FORWARDED)
    await process.stop()
    assert statuses >= STATUSES, statuses
    assert process.stdout.count(b"\n") == FORWARDED, "access log lines missing"
    texts = {f"response {i}": raw for i, raw in enumerate(responses)}
    texts |= {"stdout": bytes(process.stdout), "stderr": bytes(process.stderr)}
    assert not leaks(texts), leaks(texts)


async def test_secrets_never_leak_from_an_in_process_proxy(
        raw_upstream: StartRawUpstream, start_simulator: Callable[..., Awaitable[Running]],
        start_server: Callable[[web.Application], Awaitable[Running]],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    access = logging.getLogger(LOGGER_NAME)
    access.addHandler(caplog.handler)
    try:
        simulator = await start_simulator()
        stalling = await raw_upstream(stall)
        config = parse_config(config_text(0, simulator.url, stalling.url), ENV)
        running = await start_server(create_app(config, CollectorRegistry()))
        responses, statuses = await drive(port_of(running.url))
        await eventually(lambda: access_lines(caplog) >= FORWARDED)
    finally:
        access.removeHandler(caplog.handler)
    assert statuses >= STATUSES, statuses
    assert access_lines(caplog) == FORWARDED
    texts = {f"response {i}": raw for i, raw in enumerate(responses)}
    texts["logs"] = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}"
                              for r in caplog.records).encode()
    texts["repr(config)"] = repr(config).encode()
    assert not leaks(texts), leaks(texts)


async def run_with_config(spawn_proxy: SpawnProxy, text: str) -> ProxyProcess:
    process = await spawn_proxy(text, env=ENV, ready=False)
    assert await process.wait_exit(20) == 2, process.output()
    await process.stop()
    return process


async def test_config_errors_do_not_print_secrets(spawn_proxy: SpawnProxy) -> None:
    text = json.dumps({
        "upstreams": [{"name": "primary", "endpoint": "http://127.0.0.1:1",
                       "api_key": "${AZ_KEY}", "colour": "blue"}],
        "clients": [{"name": "app", "key_sha256": "${CLIENT_KEY}"},
                    {"name": "two", "key": "${CLIENT_KEY}", "key_sha256": "${AZ_KEY}"}],
        "metrics": {"bearer_token": "${METRICS_TOKEN}", "path": "no-slash"},
    })
    process = await run_with_config(spawn_proxy, text)
    assert b"invalid configuration" in process.stderr
    texts = {"stdout": bytes(process.stdout), "stderr": bytes(process.stderr)}
    assert not leaks(texts), leaks(texts)


@pytest.mark.parametrize("broken", [
    'api_key: "{AZURE}\n',
    "api_key: {AZURE}\n    deployments: [gpt-4o\n",
    "api_key: {AZURE}: {{\n",
], ids=["unterminated-quote", "unclosed-list-below", "mapping-on-the-secret-line"])
async def test_yaml_syntax_errors_do_not_print_a_literal_secret(
        broken: str, spawn_proxy: SpawnProxy, tmp_path: Path) -> None:
    """A key written into the file itself (not from ${ENV}) must not be echoed by a YAML
    error's context snippet: stderr usually ends up in a shared log system."""
    text = ("upstreams:\n  - name: primary\n    endpoint: http://127.0.0.1:1\n    "
            + broken.format(AZURE=AZURE_KEY))
    process = await run_with_config(spawn_proxy, text)
    assert b"not valid YAML" in process.stderr
    texts = {"stdout": bytes(process.stdout), "stderr": bytes(process.stderr)}
    assert not leaks(texts), leaks(texts)
