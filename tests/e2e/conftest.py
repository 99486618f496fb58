"""End-to-end fixtures: the real `prometheus` / `promtool` binaries and a traffic mix.

A missing binary fails the test when the CI environment variable is set (CI installs Debian's
`prometheus` package, see .ci/run) and skips it otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import pytest
import yaml

from proxy.config import FailoverConfig, UpstreamConfig
from tests.conftest import DEPLOYMENTS, Running, chat_path, require_binary

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "prometheus" / "alerts.yml"
SHIPPED_CONFIG = ROOT / "prometheus" / "prometheus.yml"

MESSAGES = [{"role": "user", "content": "Tell me about streams."}]
# Tokens need a gap between them so time per output token and tokens/s have a duration.
GAP = "token_delay_ms=2"


@pytest.fixture
def prometheus_bin() -> str:
    return require_binary("prometheus", "Debian: apt-get install prometheus")


@pytest.fixture
def promtool_bin() -> str:
    return require_binary("promtool", "Debian: apt-get install prometheus")


def shipped_job_name() -> str:
    """The scrape job of prometheus/prometheus.yml; the alert rules select `up` by it."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    name: str = job["job_name"]
    return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Prometheus:
    """A running Prometheus server: its base URL, process and log file."""

    url: str
    process: asyncio.subprocess.Process
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def api(self, http: aiohttp.ClientSession, path: str,
                  **params: str) -> dict[str, Any]:
        """`GET /api/v1/<path>` (POST with form data when `params` are given): its JSON."""
        url = f"{self.url}/api/v1/{path}"
        request = http.post(url, data=params) if params else http.get(url)
        async with request as response:
            body: dict[str, Any] = await response.json(content_type=None)
        return body


PrometheusFactory = Callable[..., Awaitable[Prometheus]]


@pytest.fixture
async def start_prometheus(prometheus_bin: str, tmp_path: Path) -> AsyncIterator[PrometheusFactory]:
    """Start the real `prometheus` scraping `target` (host:port) every second.

    Every process started is killed when the test ends, however it ends.
    """
    processes: list[asyncio.subprocess.Process] = []
    logs: list[BinaryIO] = []

    async def _start(target: str, *, rule_files: tuple[Path, ...] = (ALERTS,),
                     metrics_path: str = "/metrics") -> Prometheus:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(path.resolve()) for path in rule_files],
            "scrape_configs": [{
                "job_name": shipped_job_name(),
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "metrics_path": metrics_path,
                "static_configs": [{"targets": [target]}],
            }],
        }
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        # The port is free when picked but could be taken before Prometheus binds it: retry.
        for attempt in range(3):
            port = free_port()
            log = tmp_path / f"prometheus-{attempt}.log"
            out = log.open("wb")
            logs.append(out)
            process = await asyncio.create_subprocess_exec(
                prometheus_bin, f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / f'tsdb-{attempt}'}",
                f"--web.listen-address=127.0.0.1:{port}",
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)
            processes.append(process)
            server = Prometheus(f"http://127.0.0.1:{port}", process, log)
            if await _ready(server):
                return server
            if process.returncode is None:
                raise AssertionError(f"prometheus not ready in time:\n{server.log_tail()}")
            if "address already in use" not in server.log_tail():
                raise AssertionError(f"prometheus exited {process.returncode}:\n"
                                     f"{server.log_tail()}")
        raise AssertionError("prometheus found no free port in 3 attempts")

    try:
        yield _start
    finally:
        for process in processes:
            await _stop(process)
        for out in logs:
            out.close()


async def _ready(server: Prometheus, timeout: float = 20.0) -> bool:
    """True once `/-/ready` answers 200; False if the process exited first."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            if server.process.returncode is not None:
                return False
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(server.url + "/-/ready") as response:
                    await response.read()
                    if response.status == 200:
                        return True
            await asyncio.sleep(0.1)
    return False


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Terminate `process` (kill it if it lingers) and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
            return
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    await process.wait()


# -------------------------------------------------------------------------------------------
# Traffic
# -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """One request sent through the proxy: what the simulator does and how the client reads."""

    name: str
    simulator: str
    stream: bool = True
    deployment: str = "gpt-4o"
    abort_after_chunks: int | None = None
    """Hang up after this many body pieces arrived (a client that goes away mid-stream)."""
    body: tuple[tuple[str, Any], ...] = ()


# Every outcome the metrics distinguish, with fixed categories so each labelled series grows
# from one round to the next (a rate needs two samples of a series, and a series that appears
# with its first increment has no earlier sample).
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("stream", f"{GAP}; tokens=12; reasoning_tokens=4; cached_tokens=3"),
    Scenario("stream_async_filter", f"{GAP}; tokens=12; filter_mode=async",
             deployment="gpt-4o-mini"),
    Scenario("stream_with_usage", f"{GAP}; tokens=8",
             body=(("stream_options", {"include_usage": True}),)),
    Scenario("non_stream", "reasoning_tokens=5; cached_tokens=2", stream=False),
    Scenario("length", f"{GAP}; scenario=length; tokens=10"),
    Scenario("tool_calls", f"{GAP}; scenario=tool_calls; tokens=6"),
    Scenario("content_filter", f"{GAP}; scenario=content_filter; category=hate; tokens=10"),
    Scenario("prompt_filter", "scenario=prompt_filter; category=jailbreak"),
    Scenario("rate_limit", "scenario=rate_limit; retry_after_s=3"),
    Scenario("rate_limit_non_stream", "scenario=rate_limit; retry_after_s=1", stream=False),
    Scenario("server_error", "scenario=server_error"),
    Scenario("disconnect", f"{GAP}; scenario=disconnect; tokens=12; disconnect_after=5"),
    Scenario("error_event", f"{GAP}; scenario=error_event; tokens=10"),
    Scenario("client_abort", "token_delay_ms=5; tokens=300", abort_after_chunks=3),
    Scenario("unknown_deployment", "tokens=5", deployment="not-configured"),
)


async def send(http: aiohttp.ClientSession, base_url: str, scenario: Scenario) -> int:
    """Send `scenario` through the proxy at `base_url` and read (or drop) the answer.

    Returns the status code, or 0 when the upstream broke the body off mid-stream.
    """
    body: dict[str, Any] = {"messages": MESSAGES, "stream": scenario.stream,
                            **dict(scenario.body)}
    headers = {"api-key": "e2e-key", "x-simulator": scenario.simulator}
    try:
        async with http.post(base_url + chat_path(scenario.deployment), json=body,
                             headers=headers) as response:
            if scenario.abort_after_chunks is None:
                await response.read()
                return response.status
            seen = 0
            async for _ in response.content.iter_any():
                seen += 1
                if seen >= scenario.abort_after_chunks:
                    break
            response.close()
            return response.status
    except aiohttp.ClientPayloadError:
        return 0


async def send_round(http: aiohttp.ClientSession, base_url: str) -> list[int]:
    """Every scenario once, concurrently."""
    return list(await asyncio.gather(*(send(http, base_url, s) for s in SCENARIOS)))


async def wait_until_idle(proxy: Running, timeout: float = 10.0) -> None:
    """Until no request is in flight, i.e. every exchange has been recorded."""
    async with asyncio.timeout(timeout):
        while any(proxy.sample("aoai_proxy_in_flight_requests", deployment=d)
                  for d in ("gpt-4o", "gpt-4o-mini", "other")):
            await asyncio.sleep(0.01)



def routed(first: Running, second: Running) -> dict[str, Any]:
    """`start_proxy` overrides: gpt-4o also has a second, priority-1 upstream.

    Server errors fail over to it (and it fails too, so clients still see the 500 the scenario
    asks for). No cooldown and no failover on 429, so every scenario's status stays what each
    round expects while the routing metrics all get samples.
    """
    return {
        "upstreams": (
            UpstreamConfig(name="primary", endpoint=first.url, deployments=DEPLOYMENTS),
            UpstreamConfig(name="secondary", endpoint=second.url, deployments=("gpt-4o",),
                           priority=1),
        ),
        "failover": FailoverConfig(on_status=(500, 502, 503, 504), cooldown_seconds=0),
    }
