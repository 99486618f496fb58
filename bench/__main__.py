"""`python3 -m bench [--smoke] [--out DIR]`: every scenario against every target, one report.

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from . import report
from .procs import ROOT, can_pin, pin_self, raise_nofile, wait_quiet
from .scenarios import SCENARIOS
from .sizes import FULL, QUICK, SMOKE, Sizes, describe
from .targets import TargetSpec, nginx_binary, running, simulator, workers_option
from .tls_simulator import CERT as TLS_CERT

DEFAULT_OUT = ROOT / "bench" / "out"
CONTENDED = 0.15
RETRY_BUDGET = 300.0
"""Seconds into a run after which a contended measurement is no longer redone: a full run
stays under 10 minutes even on a busy machine."""
BASE_TARGETS = (TargetSpec("direct", "direct"), TargetSpec("bare", "bare"),
                TargetSpec("bare+uvloop", "bare", event_loop="uvloop"),
                TargetSpec("nginx", "nginx"), TargetSpec("proxy", "proxy"))
STOCK_LOOP = TargetSpec("proxy-asyncio", "proxy", event_loop="asyncio")
WITH_LOG = TargetSpec("proxy+log", "proxy", access_log=True)
TWO_WORKERS = TargetSpec("proxy-w2", "proxy", workers=2, pinned=False)


def plan(have_nginx: bool, have_workers: bool,
         only: frozenset[str] | None = None) -> dict[str, list[TargetSpec]]:
    """Which targets each scenario measures; `only`: just these names (`--targets`)."""
    base = [t for t in BASE_TARGETS if have_nginx or t.kind != "nginx"]
    s2 = base + [STOCK_LOOP, WITH_LOG] + ([TWO_WORKERS] if have_workers else [])
    chosen = {"S1": base + [STOCK_LOOP], "S2": s2, "S3": base,
              "S4": base + [STOCK_LOOP, WITH_LOG]}
    if only is None:
        return chosen
    return {s: [t for t in targets if t.name in only] for s, targets in chosen.items()}


ALL_TARGETS = ("direct", "bare", "bare+uvloop", "nginx", "proxy", "proxy-asyncio", "proxy+log",
               "proxy-w2")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: runs in seconds")
    parser.add_argument("--quick", action="store_true",
                        help="one round of S1 and S2, 5 s of S4: an A/B check, not a result")
    parser.add_argument("--tls", action="store_true",
                        help="the simulator behind TLS, as every Azure upstream is")
    parser.add_argument("--targets", default=None, metavar="NAMES",
                        help=f"comma-separated subset of {', '.join(ALL_TARGETS)} (default: all; "
                             "the checks need bare and proxy)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where reports go")
    parser.add_argument("--scenarios", default="S1,S2,S3,S4", help="comma-separated subset")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="SECONDS",
                        help="first wait until the machine is idle (default: 120, smoke: 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in selected if s not in SCENARIOS]
    if unknown:
        print(f"unknown scenarios: {', '.join(unknown)}", file=sys.stderr)
        return 2
    only = None if args.targets is None else frozenset(
        t.strip() for t in args.targets.split(",") if t.strip())
    if only is not None and not only <= set(ALL_TARGETS):
        print(f"unknown targets: {', '.join(sorted(only - set(ALL_TARGETS)))}", file=sys.stderr)
        return 2
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.smoke else 120.0)
    busy = wait_quiet(wait) if wait > 0 else None
    started = time.monotonic()
    if args.tls:
        os.environ["SSL_CERT_FILE"] = str(TLS_CERT)  # inherited by every target
    run = asyncio.run(run_all(selected, sizes, 1 if args.smoke else 3, only, args.tls))
    if args.tls:
        run["notes"].append("--tls: the simulator served https (bench/tls_simulator.py); "
                            "every target verified its certificate, the load generator's "
                            "direct streams did not.")
    if busy is not None:
        run["notes"].append(f"Machine {busy:.0f} % busy just before the run (waited up to "
                            f"{wait:.0f} s for < 10 %). `other CPU s`: CPU used during a "
                            "measurement by processes other than ours; `softirq s`: interrupt "
                            "time, mostly loopback TCP.")
    run["mode"] = "smoke" if args.smoke else "quick" if args.quick else "full"
    run["meta"]["duration_s"] = time.monotonic() - started
    run["checks"] = report.check_dicts(report.checks(run["results"]))
    md, js = report.write(run, args.out, run["meta"]["stamp"])
    if run["mode"] == "full" and selected == list(SCENARIOS) and only is None \
            and not args.tls:
        (ROOT / "bench" / "RESULTS.md").write_text(report.markdown(run))
    print(report.markdown(run))
    print(f"\nwrote {md} and {js}", file=sys.stderr)
    failed = [(s, t) for s, by in run["results"].items() for t, r in by.items() if "error" in r]
    return 1 if failed else 0


async def run_all(selected: list[str], sizes: Sizes, attempts: int,
                  only: frozenset[str] | None = None, tls: bool = False) -> dict[str, Any]:
    pin_self()
    nofile = raise_nofile()
    nginx, workers = nginx_binary(), workers_option()
    notes = _notes(nginx is not None, workers is not None, nofile)
    targets = plan(nginx is not None, workers is not None, only)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    retry_until = time.monotonic() + RETRY_BUDGET
    with tempfile.TemporaryDirectory(prefix="aoai-bench-") as tmp:
        work = Path(tmp)
        for scenario in selected:
            results[scenario] = {}
            for spec in targets[scenario]:
                results[scenario][spec.name] = await _one(
                    scenario, spec, work, sizes, workers, attempts, retry_until, tls)
    return {"meta": _meta(nginx), "sizes": asdict(sizes), "scenarios": describe(sizes),
            "notes": notes, "results": results}


async def _one(scenario: str, spec: TargetSpec, work: Path, sizes: Sizes,
               workers: list[str] | None, attempts: int, retry_until: float,
               tls: bool = False) -> dict[str, Any]:
    """One measurement with a fresh simulator and target, so no run inherits another's heap.

    With `attempts` > 1 (full runs) it waits a little for an idle machine first and is redone
    (up to `attempts` in all, until `retry_until`) when another job shared the CPUs anyway."""
    for attempt in range(1, attempts + 1):
        if attempts > 1 and time.monotonic() < retry_until:
            await asyncio.to_thread(wait_quiet, 20.0 if attempt > 1 else 10.0)
        began = time.monotonic()
        try:
            async with (simulator(work, tls) as upstream,
                        running(spec, upstream, work, workers) as target):
                result = await SCENARIOS[scenario](target, sizes)
        except Exception as exc:  # noqa: BLE001 - one broken target must not lose the others
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["attempt"] = attempt
        result["contended"] = _contended(result)
        status = result.get("error") or f"{result.get('completed')} ok"
        noisy = "  (other processes were busy)" if result["contended"] else ""
        print(f"{scenario} {spec.name:<10} {time.monotonic() - began:5.1f} s  {status}{noisy}",
              file=sys.stderr, flush=True)
        if not result["contended"] or attempt == attempts or time.monotonic() > retry_until:
            return result
    raise AssertionError("unreachable")


def _contended(result: dict[str, Any]) -> bool:
    """Other processes used more than 15 % of a CPU while we measured."""
    other, wall = result.get("other_cpu_s"), result.get("wall_s")
    return bool(other is not None and wall and other / wall > CONTENDED)


def _notes(have_nginx: bool, have_workers: bool, nofile: int) -> list[str]:
    notes = [
        "Targets pinned to CPU 0 with taskset; simulator and load generator on CPU 1."
        if can_pin() else "Fewer than 2 CPUs or no taskset: nothing is pinned.",
        (f"RLIMIT_NOFILE {nofile} for every child. Each target is started fresh per scenario "
         "and warmed up before measuring."),
        ("bare = the aiohttp pass-through on asyncio's own loop (what every target is held "
         "to); bare+uvloop = the same on uvloop, a reference row. proxy = `python3 -m proxy` "
         "with metrics and usage injection on, access log off, on its default loop (uvloop); "
         "proxy-asyncio = the same on asyncio's own loop; proxy+log = the proxy with the "
         "access log on, stdout drained through a pipe."),
    ]
    if not have_nginx:
        notes.append("nginx is not installed: the nginx target was skipped.")
    if not have_workers:
        notes.append("`python3 -m proxy --help` shows no `--workers` option: the 2-worker S2 "
                     "run was skipped.")
    else:
        notes.append("proxy-w2 (S2) runs unpinned on every CPU, sharing them with the "
                     "simulator and the load generator.")
    return notes


def _meta(nginx: str | None) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    return {
        "utc": now.strftime("%Y-%m-%d %H:%M:%S UTC"), "stamp": now.strftime("%Y%m%dT%H%M%SZ"),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "cpu_model": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "aiohttp": aiohttp.__version__, "nginx": _nginx_version(nginx),
    }


def _git(*args: str) -> str:
    # --no-optional-locks: `status` must not refresh (write) the index of a shared checkout.
    done = subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nginx_version(binary: str | None) -> str | None:
    if binary is None:
        return None
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10,
                          check=False)
    return done.stderr.strip().rsplit("/", 1)[-1] or None


if __name__ == "__main__":
    raise SystemExit(main())
