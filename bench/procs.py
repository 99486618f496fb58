"""Child processes: start them pinned to a CPU, wait for their port, measure them, stop them."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
TARGET_CPU = "0"
"""CPU of the proxy-like target under test."""
LOAD_CPU = "1"
"""CPU shared by the simulator and the load generator (this process)."""


def short_path(path: str) -> str:
    """A source file as a report names it: `.../site-packages/aiohttp/web_protocol.py` ->
    `aiohttp/web_protocol.py`, the standard library's from its package, ours from ROOT."""
    for marker in ("site-packages/", "lib/python3", str(ROOT) + "/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "lib/python3" else tail
    return path


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pin_self() -> None:
    """Keep the load generator off the target's CPU."""
    if can_pin():
        os.sched_setaffinity(0, {int(LOAD_CPU)})


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def wait_quiet(max_wait: float, busy_below: float = 10.0) -> float:
    """Wait (at most `max_wait` s) until the machine is below `busy_below` % CPU over one
    second, so another job's tests do not land in our numbers; returns the last reading."""
    deadline = time.monotonic() + max_wait
    busy = float(psutil.cpu_percent(interval=1.0))
    while busy >= busy_below and time.monotonic() < deadline:
        busy = float(psutil.cpu_percent(interval=1.0))
    return busy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pin_prefix(cpus: str | None) -> list[str]:
    """`taskset -c CPUS`; None means every CPU (children inherit this process's pinning)."""
    if not can_pin():
        return []
    return ["taskset", "-c", cpus if cpus is not None else f"0-{(os.cpu_count() or 1) - 1}"]


@dataclass
class Child:
    """A started process and what it left in its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tree(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.popen.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children (workers)."""
        total = 0.0
        for proc in self.tree():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.tree():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (graceful for the proxy and nginx), SIGKILL after `timeout`."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def spawn(name: str, argv: list[str], *, cpus: str | None, log_dir: Path,
          drain_stdout: bool = False) -> Child:
    """Start `argv` pinned to `cpus`; stderr (and stdout unless drained) go to a log file.

    `drain_stdout`: stdout is a pipe read and discarded by a thread, as a log collector would.
    """
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            _pin_prefix(cpus) + argv, cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if drain_stdout else out, stderr=out)
    if drain_stdout and popen.stdout is not None:
        threading.Thread(target=_discard, args=(popen.stdout,), daemon=True).start()
    return Child(name, popen, log)


def _discard(stream: object) -> None:
    read = getattr(stream, "read1", None)
    try:
        while read is not None and read(1 << 16):
            pass
    except (OSError, ValueError):
        pass  # closed by stop()


async def wait_listening(child: Child, port: int, timeout: float = 15.0) -> None:
    """Until `port` accepts connections; fails early if the child died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if child.popen.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}:\n"
                               f"{child.log_tail()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"{child.name} did not listen on port {port} within {timeout:.0f} s:\n"
                       f"{child.log_tail()}")
