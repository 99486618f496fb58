"""The targets: how each is started (fresh per scenario), where it listens, what to measure."""

from __future__ import annotations

import resource
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from proxy.vocabulary import DEFAULT_DEPLOYMENTS

from .procs import LOAD_CPU, PYTHON, ROOT, TARGET_CPU, Child, free_port, spawn, wait_listening

DEPLOYMENTS = DEFAULT_DEPLOYMENTS


@dataclass(frozen=True)
class TargetSpec:
    name: str
    kind: str
    """direct | proxy | bare | nginx (| simulator, the upstream itself)"""
    access_log: bool = False
    workers: int = 1
    pinned: bool = True
    """False: the target may run on every CPU (the multi-worker proxy)."""
    event_loop: str | None = None
    """bare and proxy: `uvloop` or `asyncio`; None = the target's default (bare: asyncio,
    proxy: its own default, uvloop where installed)."""


@dataclass
class Running:
    """A started target: its URL and its process tree (None for `direct`, the simulator)."""

    spec: TargetSpec
    url: str
    child: Child | None
    upstream: Running | None = None
    """The simulator behind this target."""

    def cpu_seconds(self) -> float | None:
        return self.child.cpu_seconds() if self.child else None

    def rss_bytes(self) -> int | None:
        return self.child.rss_bytes() if self.child else None


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    return found


def workers_option() -> list[str] | None:
    """How `--workers` is passed to the proxy, or None when its CLI has no such option."""
    for args, prefix in ((["--help"], []), (["serve", "--help"], ["serve"])):
        help_text = subprocess.run([PYTHON, "-m", "proxy", *args], capture_output=True,
                                   text=True, timeout=30, cwd=ROOT, check=False).stdout
        if "--workers" in help_text:
            return prefix
    return None


@asynccontextmanager
async def simulator(log_dir: Path, tls: bool = False) -> AsyncIterator[Running]:
    """The upstream of every target: the built-in simulator, pinned with the load generator.

    Its defaults are S1's; every scenario still sets its own shape with `x-simulator`.
    `tls`: behind TLS (`bench/tls_simulator.py`; the targets trust it via `SSL_CERT_FILE`).
    """
    port = free_port()
    argv = [PYTHON, "-m", "bench.tls_simulator", "--port", str(port)] if tls else [
        PYTHON, "-m", "proxy", "simulate", "--host", "127.0.0.1", "--port", str(port),
        "--tokens", "200", "--first-token-delay", "0.2", "--token-delay", "0.005"]
    child = spawn("simulator", argv, cpus=LOAD_CPU, log_dir=log_dir)
    try:
        await wait_listening(child, port)
        scheme = "https" if tls else "http"
        yield Running(TargetSpec("simulator", "simulator"), f"{scheme}://127.0.0.1:{port}",
                      child)
    finally:
        child.stop()


@asynccontextmanager
async def running(spec: TargetSpec, upstream: Running, work: Path,
                  workers_prefix: list[str] | None = None) -> AsyncIterator[Running]:
    """Start a fresh `spec` in front of `upstream`; stop it afterwards."""
    if spec.kind == "direct":
        yield Running(spec, upstream.url, None, upstream)
        return
    port = free_port()
    child = _start(spec, port, upstream.url, work, workers_prefix)
    try:
        await wait_listening(child, port)
        yield Running(spec, f"http://127.0.0.1:{port}", child, upstream)
    finally:
        child.stop()


def _start(spec: TargetSpec, port: int, upstream: str, work: Path,
           workers_prefix: list[str] | None) -> Child:
    cpus = TARGET_CPU if spec.pinned else None
    name = spec.name.replace("+", "-")
    if spec.kind == "bare":
        argv = [PYTHON, "-m", "bench.bare_proxy", "--port", str(port), "--upstream", upstream]
        if spec.event_loop == "uvloop":
            argv.append("--uvloop")
        return spawn(name, argv, cpus=cpus, log_dir=work)
    if spec.kind == "nginx":
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        conf = write_nginx_conf(work / name, port, upstream)
        argv = [binary, "-p", str(conf.parent), "-c", str(conf),
                "-e", str(conf.parent / "error.log")]
        return spawn(name, argv, cpus=cpus, log_dir=work)
    config = write_proxy_config(work / f"{name}.yaml", port, upstream, spec.access_log)
    argv = [PYTHON, "-m", "proxy", "--config", str(config)]
    if spec.workers > 1:
        if workers_prefix is None:
            raise RuntimeError("the proxy has no --workers option")
        argv = [PYTHON, "-m", "proxy", *workers_prefix, "--config", str(config),
                "--workers", str(spec.workers)]
    if spec.event_loop is not None:
        argv += ["--event-loop", spec.event_loop]
    return spawn(name, argv, cpus=cpus, log_dir=work, drain_stdout=spec.access_log)


def write_proxy_config(path: Path, port: int, upstream: str, access_log: bool) -> Path:
    """Every instrumentation on (metrics, usage injection); the access log as asked."""
    path.write_text(
        f"listen: {{host: 127.0.0.1, port: {port}}}\n"
        "upstreams:\n"
        f"  - {{name: simulator, endpoint: '{upstream}', "
        f"deployments: [{', '.join(DEPLOYMENTS)}]}}\n"
        "inject_stream_usage: true\n"
        # Stopping between scenarios is not measured: no readiness grace period.
        "shutdown: {grace: 0, drain_timeout: 5}\n"
        f"access_log: {'true' if access_log else 'false'}\n"
    )
    return path


def write_nginx_conf(directory: Path, port: int, upstream: str) -> Path:
    """One worker, no buffering, HTTP/1.1 keepalive to the upstream; every path in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    scheme, host_port = upstream.split("://", 1)
    temp = "".join(f"    {kind}_temp_path {directory}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = directory / "nginx.conf"
    conf.write_text(f"""daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[0]};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
{temp}    upstream simulator {{ server {host_port}; keepalive 1024; keepalive_requests 100000; }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000;
        location / {{
            proxy_pass {scheme}://simulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
""")
    return conf
