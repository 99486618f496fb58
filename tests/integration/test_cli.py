"""The command line as a user runs it: real processes, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", *args, cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_bad_config_exits_2_naming_file_and_every_key(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("listen:\n  port: x\nupstreams:\n  - name: a\n    api_key: ${NOPE_X}\n"
                    "colour: blue\n")
    code, _, err = await run("--config", str(path), )
    assert code == 2
    for fragment in (f"{path}: listen.port:", f"{path}: upstreams[0].endpoint: missing",
                     f"{path}: upstreams[0].api_key: environment variable NOPE_X is not set",
                     f"{path}: colour: unknown key"):
        assert fragment in err, err


async def test_bad_routing_keys_exit_2_naming_file_and_every_key(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("upstreams:\n  - name: a\n    endpoint: simulator\n    priority: -1\n"
                    "    weight: 0\n    deployments: [gpt-4o, gpt-4o]\n"
                    "failover: {max_attempt: 2}\n")
    code, _, err = await run("--config", str(path))
    assert code == 2
    for fragment in (f"{path}: upstreams[0].priority:", f"{path}: upstreams[0].weight:",
                     f"{path}: upstreams[0].deployments[1]: 'gpt-4o' is listed twice",
                     f"{path}: failover.max_attempt: unknown key"):
        assert fragment in err, err


async def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    code, _, err = await run("--config", str(tmp_path / "absent.yaml"))
    assert code == 2 and "absent.yaml: cannot read file" in err


async def wait_healthy(url: str, path: str = "/healthz") -> None:
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(20):
            while True:
                try:
                    async with http.get(url + path) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)


async def test_shipped_config_serves_a_stream_on_the_simulator_and_stops_on_sigterm() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--config", "config.yaml", cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AZURE_OPENAI")},
             "PROXY_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url)
        async with aiohttp.ClientSession() as http:
            async with http.post(
                    url + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
                    json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
                    headers={"api-key": "k"}) as response:
                body = await response.read()
            assert response.status == 200
            assert body.endswith(b"data: [DONE]\n\n")
            async with http.get(url + "/metrics") as response:
                assert "aoai_proxy_requests_total" in await response.text()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    line = next(line for line in out.decode().splitlines() if '"path"' in line)
    assert '"deployment":"gpt-4o"' in line and '"status":200' in line


async def test_simulate_command_serves_until_sigterm() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "simulate", "--port", str(port), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", "/openai/v1/models")
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await process.communicate()
    assert process.returncode == 0


async def test_the_serving_process_never_loads_the_simulator_or_the_load_generator() -> None:
    # A fresh interpreter: parse a serve command line and start the proxy app (no listener)
    # for an upstream that is not the simulator, then list what got imported.
    script = """
import asyncio, sys
from aiohttp import web
from proxy.__main__ import build_parser
from proxy.app import create_app
from proxy.config import Config, UpstreamConfig

build_parser().parse_args(["serve", "--config", "x.yaml"])
config = Config(upstreams=(UpstreamConfig(name="azure", endpoint="http://127.0.0.1:9",
                                          deployments=("gpt-4o",)),), access_log=False)

async def started():
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    await runner.cleanup()

asyncio.run(started())
print(" ".join(sorted(m for m in sys.modules if m.startswith("proxy."))))
"""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    loaded = set(out.decode().split())
    assert "proxy.relay.handler" in loaded, loaded  # the app did start
    tools = {m for m in loaded if m.startswith(("proxy.simulator", "proxy.traffic.generator",
                                                 "proxy.traffic.mix"))}
    assert not tools, f"the serving process imported {sorted(tools)}"


async def test_simulate_with_a_quota_answers_429_once_it_is_used_up() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "simulate", "--port", str(port), "--rpm", "2",
        "--tpm", "100000", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/openai/deployments/gpt-4o/chat/completions?api-version=x"
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", "/openai/v1/models")
        statuses = []
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.post(url, json={"messages": [{"role": "user", "content": "hi"}]},
                                     headers={"api-key": "k"}) as response:
                    statuses.append(response.status)
                    retry = response.headers.get("retry-after")
        assert statuses == [200, 200, 429] and retry is not None and int(retry) > 50
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await process.communicate()
    assert process.returncode == 0


async def test_bad_simulate_quota_is_refused() -> None:
    code, _, err = await run("simulate", "--rpm", "0")
    assert code == 2 and "--rpm: expected a positive number, got 0" in err


async def test_demo_fails_over_to_its_second_region_when_the_first_is_out_of_tokens() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "demo", "--port", "0", "--no-traffic", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            while b"Metrics " not in (line := await process.stdout.readline()):
                assert line, "demo exited before printing its banner"
        url = line.decode().split()[-1].removesuffix("/metrics")
        # ~2,400 tokens each, at once: two fit in sim-eastus's 5,000 a minute, the third not.
        fast = "tokens=2400; first_token_delay_ms=0; token_delay_ms=0"
        served = []
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.post(
                        url + "/openai/deployments/gpt-4o/chat/completions?api-version=x",
                        json={"messages": [{"role": "user", "content": "hi"}]},
                        headers={"api-key": "k", "x-simulator": fast}) as response:
                    assert response.status == 200
                    served.append((response.headers["x-aoai-proxy-upstream"],
                                   response.headers["x-aoai-proxy-attempts"]))
        assert served == [("sim-eastus", "1"), ("sim-eastus", "1"), ("sim-sweden", "2")]
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await process.communicate()
    assert process.returncode == 0
