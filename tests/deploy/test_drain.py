"""Graceful drain as Kubernetes does it, on the proxy started as the container starts it.

On a pod's deletion the kubelet sends SIGTERM and, terminationGracePeriodSeconds later, SIGKILL;
meanwhile the endpoint removal travels to kube-proxy and the ingress controllers. The proxy
must say "not ready" at once, keep serving through `shutdown.grace` (new requests still
arriving are answered), then refuse new connections, let the in-flight stream finish, keep
its liveness endpoint answering while it does (else the kubelet would kill it), and exit 0.

The one change to the shipped config besides addresses: `shutdown.grace` is cut from the
shipped 15 s to 3 s so the test takes seconds. `shutdown.drain_timeout` stays as shipped
(600 s); the stream here outlasts the grace and ends well inside the drain.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from tests.conftest import Running
from tests.deploy.conftest import StartShipped
from tests.deploy.k8s import DEPLOY, Obj, shipped_config
from tests.faults.faultkit import (
    CHAT_PATH,
    DONE,
    STREAM_BODY_WITH_USAGE,
    RawClient,
    now,
    raw_exchange,
    refused,
    request_bytes,
)

GRACE = 3.0
TOKENS, TOKEN_DELAY_MS = 80, 100  # an 8 s stream: longer than the grace
SLACK = 5.0


async def status(port: int, path: str) -> int | None:
    try:
        client = await raw_exchange(port, request_bytes("GET", path), timeout=3)
    except OSError:
        return None
    return client.response.status


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Poll the async `check` until it holds or `timeout` passes; returns its last answer."""
    deadline = now() + timeout
    for _ in range(int(timeout / 0.02) + 2):
        if await check():
            return True
        if now() >= deadline:
            break
        await asyncio.sleep(0.02)
    return await check()


async def open_stream(port: int) -> RawClient:
    client = await RawClient.connect(port)
    await client.send(request_bytes("POST", CHAT_PATH, body=STREAM_BODY_WITH_USAGE, headers=[
        ("Content-Type", "application/json"), ("api-key", "k"),
        ("x-simulator", f"tokens={TOKENS}; token_delay_ms={TOKEN_DELAY_MS}")]))
    assert await client.read_until(lambda r: b'"content"' in r.body, timeout=10)
    return client


async def test_sigterm_drains_an_in_flight_stream_longer_than_the_grace_then_exits_0(
        renderings: dict[Path, list[Obj]], start_shipped: StartShipped,
        start_simulator: Callable[..., Awaitable[Running]]) -> None:
    objects = renderings[DEPLOY]
    shipped = yaml.safe_load(shipped_config(objects))["shutdown"]
    assert GRACE < shipped["grace"], "the test shortens the grace, never lengthens it"
    simulator = await start_simulator()
    proxy = await start_shipped(objects, {"AZURE_OPENAI_ENDPOINT": simulator.url},
                                shutdown={**shipped, "grace": GRACE})
    assert proxy.config.shutdown.drain_timeout == shipped["drain_timeout"]
    assert proxy.config.admin is not None
    port, admin = proxy.config.listen.port, proxy.config.admin.port
    stream = await open_stream(port)

    proxy.process.send_signal(signal.SIGTERM)
    signalled = now()

    async def not_ready() -> bool:
        return await status(admin, "/readyz") == 503

    assert await until(not_ready, timeout=1.0), "readyz must turn 503 at once"
    # Still serving during the grace: a request that arrives meanwhile is answered.
    late = await raw_exchange(port, request_bytes(
        "POST", CHAT_PATH, body=b'{"messages":[{"role":"user","content":"hi"}]}',
        headers=[("Content-Type", "application/json"), ("api-key", "k"),
                 ("x-simulator", "tokens=3")]), timeout=GRACE)
    assert late.response.status == 200
    assert now() - signalled < GRACE, "the grace ended before the checks (machine too slow?)"
    assert not stream.eof

    async def closed() -> bool:
        return await refused(port)

    assert await until(closed, timeout=GRACE + SLACK), "new connections accepted after grace"
    assert now() - signalled >= GRACE - 0.1, "the listener closed before the grace ended"
    # Draining: the stream flows on, liveness holds (the kubelet keeps the pod), not ready.
    assert not stream.eof, "the stream was cut when the listener closed"
    assert await status(admin, "/healthz") == 200
    assert await status(admin, "/readyz") == 503

    stream_seconds = TOKENS * TOKEN_DELAY_MS / 1000
    assert await stream.read_to_end(stream_seconds + SLACK)
    assert stream.response.complete and bytes(stream.response.body).endswith(DONE), (
        "the in-flight stream was cut")
    assert (stream.eof_at or now()) - signalled > GRACE, "the stream did not outlast the grace"
    await stream.aclose()
    code = await proxy.process.wait_exit(SLACK)
    assert code == 0, proxy.process.output()
    assert now() - signalled < GRACE + proxy.config.shutdown.drain_timeout
