"""What is measured around a scenario: CPU seconds of every party, and percentiles."""

from __future__ import annotations

import math
import time
from typing import Any, Self

import psutil

from .targets import Running
from .timed_client import StreamRecord

Result = dict[str, Any]


class Meter:
    """CPU seconds around a block: the target's, the load generator's (this process), the
    simulator's, the other processes' on the machine (another job's tests would show here) and
    the kernel's interrupt work (loopback TCP is mostly softirq time, owned by no process)."""

    def __init__(self, target: Running) -> None:
        self._target = target
        self._me = psutil.Process()
        self.wall = 0.0
        self.target_cpu: float | None = None
        self.loadgen_cpu = 0.0
        self.simulator_cpu: float | None = None
        self.other_cpu: float | None = None
        self.softirq_cpu: float | None = None

    def _sample(self) -> tuple[float, float | None, float, float | None, float, float]:
        upstream = self._target.upstream
        busy, interrupts = _machine_busy()
        return (time.perf_counter(), self._target.cpu_seconds(), _cpu(self._me),
                upstream.cpu_seconds() if upstream else None, busy, interrupts)

    def __enter__(self) -> Self:
        self._before = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._sample()
        wall, target, load, sim, busy, interrupts = (
            _delta(a, b) for a, b in zip(after, self._before, strict=True))
        self.wall, self.target_cpu, self.loadgen_cpu = wall or 0.0, target, load or 0.0
        self.simulator_cpu, self.softirq_cpu = sim, interrupts
        if busy is not None:
            self.other_cpu = max(0.0, busy - (target or 0) - self.loadgen_cpu - (sim or 0))

    def as_dict(self) -> Result:
        return {"wall_s": self.wall, "target_cpu_s": self.target_cpu,
                "target_cpu_util": None if self.target_cpu is None
                else self.target_cpu / self.wall,
                "loadgen_cpu_s": self.loadgen_cpu, "simulator_cpu_s": self.simulator_cpu,
                "other_cpu_s": self.other_cpu, "softirq_cpu_s": self.softirq_cpu}


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _machine_busy() -> tuple[float, float]:
    """CPU seconds the machine spent in processes (guest time is inside user time already),
    and in interrupts."""
    times = psutil.cpu_times()
    interrupts = getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)
    return float(times.user + times.nice + times.system), float(interrupts)


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p99/max, in the unit given."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50": rank(50), "p99": rank(99), "max": ordered[-1]}


def completed(records: list[StreamRecord]) -> Result:
    errors = sorted({r.error or f"HTTP {r.status}" for r in records if not r.ok})
    return {"streams": len(records), "completed": sum(r.ok for r in records),
            "errors": errors[:5]}
