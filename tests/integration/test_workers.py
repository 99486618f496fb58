"""`--workers 2`: two processes on one port whose metrics add up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from tests.conftest import Running, chat_path
from tests.integration.test_cli import ROOT, free_port, wait_healthy

TOTAL = 200


async def requests_total(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(url + "/metrics", headers={"Accept-Encoding": "identity"}) as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("aoai_proxy_requests_total{"))


async def test_counters_from_two_workers_equal_the_requests_sent(
        tmp_path: Path, start_simulator: Callable[..., Awaitable[Running]]) -> None:
    simulator = await start_simulator()
    port = free_port()
    config = tmp_path / "proxy.yaml"
    config.write_text(f"listen: {{host: 127.0.0.1, port: {port}}}\n"
                      f"upstreams: [{{name: p, endpoint: '{simulator.url}', "
                      "deployments: [gpt-4o]}]\naccess_log: false\n"
                      "shutdown: {grace: 0, drain_timeout: 5}\n")
    before = set(os.listdir("/tmp"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--config", str(config), "--workers", "2", cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url)
        sent = 0
        # A new connection per request lets the kernel spread them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def one(stream: bool) -> None:
                nonlocal sent
                async with http.post(url + chat_path(), json={
                        "messages": [{"role": "user", "content": "hi"}], "stream": stream},
                        headers={"api-key": "k"}) as response:
                    await response.read()
                    assert response.status == 200
                    sent += 1

            async with asyncio.timeout(60):
                for batch in range(TOTAL // 20):
                    await asyncio.gather(*(one(i % 2 == 0) for i in range(20)))
                # Each scrape lands on either worker; every one must show the whole sum.
                totals = [await requests_total(http, url) for _ in range(10)]
        assert sent == TOTAL
        assert totals == [TOTAL] * 10
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    # The per-instance multiprocess directory is gone with the proxy.
    leftover = {n for n in set(os.listdir("/tmp")) - before if n.startswith("aoai-stream-proxy")}
    assert not leftover
