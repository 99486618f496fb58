"""`--workers N`: N proxy processes sharing one port, metrics that add up across them.

The supervisor makes a fresh per-instance directory for prometheus-client's multiprocess mode
(two proxies on one host never share one), starts N workers with `SO_REUSEPORT` so the kernel
spreads connections over them, restarts a worker that dies, passes SIGINT/SIGTERM on for
each worker's own graceful shutdown, and removes the directory at the end. Every worker's
`/metrics` serves the sum over all workers, so any of them answers a scrape truthfully.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from prometheus_client import CollectorRegistry, multiprocess

from proxy.config import Config

log = logging.getLogger("aoai_stream_proxy")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_RESTART_PAUSE = 1.0


def worker_count(value: str) -> int:
    """`auto` = the CPUs this process may run on; else a positive number."""
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    count = int(value)
    if count < 1:
        raise ValueError("--workers must be at least 1 or `auto`")
    return count


class Supervisor:
    def __init__(self, config_path: str, config: Config, count: int,
                 event_loop: str = "auto") -> None:
        self.config_path = config_path
        self.event_loop = event_loop
        self.config = config
        self.count = count
        self.stopping = False
        self.metrics_dir = tempfile.mkdtemp(prefix="aoai-stream-proxy-metrics-")
        self.workers: list[subprocess.Popen[bytes]] = []

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.workers = [self._spawn() for _ in range(self.count)]
            log.info("supervising %d workers on %s:%d", self.count, self.config.listen.host,
                     self.config.listen.port)
            while not self.stopping:
                self._replace_dead()
                time.sleep(0.2)
            return self._wait_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, MULTIPROC_ENV: self.metrics_dir}
        return subprocess.Popen(
            [sys.executable, "-m", "proxy", "--config", self.config_path, "serve", "--worker",
             "--event-loop", self.event_loop],
            env=env)

    def _replace_dead(self) -> None:
        for i, worker in enumerate(self.workers):
            code = worker.poll()
            if code is None or self.stopping:
                continue
            # Its live gauges (in-flight) must stop counting; its counters stay summed.
            multiprocess.mark_process_dead(worker.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            log.error("worker %d exited with status %s; restarting it", worker.pid, code)
            time.sleep(_RESTART_PAUSE)
            self.workers[i] = self._spawn()

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    def _wait_all(self) -> int:
        shutdown = self.config.shutdown
        deadline = time.monotonic() + shutdown.grace + shutdown.drain_timeout + 10
        status = 0
        for worker in self.workers:
            try:
                code = worker.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                code = worker.wait()
            status = status or (0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else 1)
        return status


def worker_registries() -> tuple[CollectorRegistry, CollectorRegistry]:
    """In a worker: a private registry for the metric objects, and one that serves the sum."""
    exposition = CollectorRegistry()
    multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
        exposition, path=os.environ[MULTIPROC_ENV])
    return CollectorRegistry(), exposition


