"""An https upstream, as every real Azure endpoint is: the proxy process verifies it with the
system's trust store (here `SSL_CERT_FILE`, which OpenSSL reads), streams through it byte for
byte, and turns a certificate it cannot verify, or a handshake that fails, into an
Azure-shaped 502 that says so."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from proxy.simulator import SimulatorConfig, create_simulator_app
from tests.conftest import (
    DEPLOYMENTS,
    TLS_CERT,
    Running,
    SpawnProxy,
    chat_path,
    tls_client_context,
    tls_server_context,
)
from tests.faults.faultkit import yaml_config

BODY = {"messages": [{"role": "user", "content": "hi"}], "stream": True,
        "stream_options": {"include_usage": True}}


@pytest.fixture
async def tls_simulator() -> AsyncIterator[str]:
    runner = web.AppRunner(create_simulator_app(SimulatorConfig(deployments=DEPLOYMENTS)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_server_context()).start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def upstream_at(endpoint: str) -> Callable[[int], str]:
    """A proxy config for `spawn_proxy`: one upstream at `endpoint`."""
    return lambda port: yaml_config([{"name": "azure", "endpoint": endpoint,
                                      "deployments": list(DEPLOYMENTS)}], port)


async def post(url: str, **kwargs: object) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url + chat_path("gpt-4o"), json=BODY, headers={
                "api-key": "k", "x-simulator": "tokens=40"}, **kwargs) as response:  # type: ignore[arg-type]
            return response.status, await response.read()


def contents(stream: bytes) -> list[str]:
    """The content deltas of an SSE body, in order."""
    found = []
    for line in stream.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:])["choices"]:
                found.append(choice.get("delta", {}).get("content") or "")
    return found


async def test_a_stream_over_tls_arrives_whole_and_is_counted(
        tls_simulator: str, spawn_proxy: SpawnProxy) -> None:
    proxy = await spawn_proxy(upstream_at(tls_simulator), env={"SSL_CERT_FILE": str(TLS_CERT)})
    direct_status, direct = await post(tls_simulator, ssl=tls_client_context())
    status, proxied = await post(proxy.url)
    assert status == direct_status == 200
    assert proxied.endswith(b"data: [DONE]\n\n")
    assert contents(proxied) == contents(direct) and len(contents(direct)) > 40
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/metrics") as response:
            metrics = await response.text()
    counted = [line for line in metrics.splitlines()
               if line.startswith("aoai_proxy_tokens_total{") and 'deployment="gpt-4o"' in line
               and 'token_type="completion"' in line]
    assert [line.rsplit(" ", 1)[1] for line in counted] == ["40.0"], counted
    assert b"Traceback" not in proxy.stderr


async def test_an_unverifiable_certificate_is_a_502_in_azure_shape(
        tls_simulator: str, spawn_proxy: SpawnProxy) -> None:
    proxy = await spawn_proxy(upstream_at(tls_simulator))  # the test certificate is untrusted
    status, body = await post(proxy.url)
    assert status == 502
    error = json.loads(body)["error"]
    assert error["code"] == "BadGateway"
    assert "TLS certificate of 127.0.0.1 could not be verified" in error["message"], error
    assert "self-signed certificate" in error["message"], error
    assert b"Traceback" not in proxy.stderr


async def test_an_https_endpoint_that_speaks_plain_http_is_a_502_naming_tls(
        simulator: Running, spawn_proxy: SpawnProxy) -> None:
    proxy = await spawn_proxy(upstream_at(simulator.url.replace("http://", "https://")))
    status, body = await post(proxy.url)
    assert status == 502
    assert "TLS handshake with 127.0.0.1 failed" in json.loads(body)["error"]["message"], body
