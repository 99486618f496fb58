"""Where a target's memory per open stream goes: tracemalloc sites, and RSS, per stream.

`python3 -m bench.stream_memory [--streams N] [--target proxy|bare|bare+uvloop] [--frames F]
[--no-trace] [--top K]`; `python3 -m bench.stream_memory --diff DIR OTHER_DIR [--streams N]`

Starts the simulator and one target (the proxy with S3's configuration, or the bare
pass-through on asyncio's loop or uvloop), opens N slow streams (S3's shape, chunks 1 s apart,
but 90 of them: a target slowed by tracemalloc takes a while to open them all, and none may
end before the snapshot) and compares the target while every stream is open with the target
idle just before. With tracemalloc (the default) the target runs under
`python3 -m bench.stream_memory --child ...`, which starts tracemalloc, runs the target's own
main and, on SIGUSR1, writes a snapshot, runs a full collection and writes another: the report
lists the allocation sites that grew most, in bytes per open stream, by file:line and by the
innermost frame of the proxy's own code (what in the proxy caused an aiohttp or stdlib
allocation; needs `--frames` > 1), and apart from them the cyclic garbage not yet collected.
`--diff` compares the snapshots two runs left in their directories, site by site (e.g. the
proxy against bare+uvloop, the same loop). tracemalloc counts are near-deterministic, so
before/after comparisons hold even on a busy machine; RSS per stream (what S3 reports) is
printed too, but it is noisy and inflated by tracemalloc: `--no-trace` measures it without.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from .procs import (
    LOAD_CPU,
    PYTHON,
    ROOT,
    TARGET_CPU,
    free_port,
    pin_self,
    raise_nofile,
    short_path,
    spawn,
    wait_listening,
)
from .targets import Running, TargetSpec, simulator, write_proxy_config
from .timed_client import Opened, new_session, simulator_header, stream_many

_CHUNKS = 90
_GAP_MS = 1000.0


def child_main(snapshots: Path, frames: int, argv: list[str]) -> None:
    """Run `python3 -m <argv>` under tracemalloc; SIGUSR1 writes snapshot N to `snapshots`."""
    tracemalloc.start(frames)
    taken = 0

    def write(path: Path) -> None:
        tracemalloc.take_snapshot().dump(str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").rename(path)

    def dump(_signum: int, _frame: object) -> None:
        # Each snapshot is followed by one after a full collection: what the two differ by
        # is cyclic garbage not yet collected (the gen-0 threshold is high).
        nonlocal taken
        write(snapshots / f"snap-{taken}-before-gc.tracemalloc")
        gc.collect()
        write(snapshots / f"snap-{taken}.tracemalloc")
        taken += 1

    signal.signal(signal.SIGUSR1, dump)
    module, rest = argv[0], argv[1:]
    sys.argv = [module, *rest]
    if module == "proxy":
        from proxy.__main__ import main

        sys.exit(main(rest))
    import runpy

    runpy.run_module(module, run_name="__main__", alter_sys=True)


async def _snapshot(pid: int, snapshots: Path, index: int) -> tracemalloc.Snapshot:
    os.kill(pid, signal.SIGUSR1)
    path = snapshots / f"snap-{index}.tracemalloc"
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the target wrote no snapshot")
        await asyncio.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path))


def _target_argv(kind: str, port: int, upstream: str, work: Path) -> list[str]:
    if kind.startswith("bare"):
        loop = ["--uvloop"] if kind == "bare+uvloop" else []
        return ["bench.bare_proxy", "--port", str(port), "--upstream", upstream, *loop]
    config = write_proxy_config(work / "proxy.yaml", port, upstream, access_log=False)
    return ["proxy", "--config", str(config)]


async def measure(args: argparse.Namespace) -> None:
    pin_self()
    raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="stream-memory-"))
    async with simulator(work) as upstream:
        port = free_port()
        target_argv = _target_argv(args.target, port, upstream.url, work)
        argv = ([PYTHON, "-m", "bench.stream_memory", "--child", str(work),
                 "--frames", str(args.frames), "--", *target_argv]
                if args.trace else [PYTHON, "-m", *target_argv])
        child = spawn(args.target.replace("+", "-"), argv, cpus=TARGET_CPU, log_dir=work)
        try:
            await wait_listening(child, port, timeout=120)
            target = Running(TargetSpec(args.target, args.target), f"http://127.0.0.1:{port}",
                             child, upstream)
            await _run(target, args, work, child.popen.pid)
        finally:
            child.stop()
    print(f"(logs and snapshots in {work}; load generator on CPU {LOAD_CPU})")


async def _run(target: Running, args: argparse.Namespace, work: Path, pid: int) -> None:
    n = args.streams
    header = simulator_header(_CHUNKS, _GAP_MS, _GAP_MS)
    async with new_session() as session:
        await stream_many(session, [target.url] * 10, simulator_header(5), timeout=30)
        await asyncio.sleep(0.5)
        idle_rss = target.rss_bytes() or 0
        idle = await _snapshot(pid, work, 0) if args.trace else None
        opened = Opened(n)
        task = asyncio.create_task(stream_many(
            session, [target.url] * n, header, opened=opened, timeout=_CHUNKS * 2 + 300,
            batch=args.batch, batch_interval=0.25))
        waiter = asyncio.create_task(opened.all.wait())
        await asyncio.wait([waiter, task], timeout=300, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not opened.all.is_set():
            records = await task if task.done() else []
            errors = Counter(r.error for r in records if not r.ok)
            raise RuntimeError(f"only {opened.count} of {n} streams opened: {errors}")
        await asyncio.sleep(0.5)
        open_rss = max(target.rss_bytes() or 0 for _ in range(1))
        full = await _snapshot(pid, work, 1) if args.trace else None
        garbage = (tracemalloc.Snapshot.load(str(work / "snap-1-before-gc.tracemalloc"))
                   if args.trace else None)
        records = await task
    ok = sum(r.ok for r in records)
    print(f"{args.target}: {n} streams open, {ok} completed")
    print(f"RSS per open stream: {(open_rss - idle_rss) / n / 1024:.1f} KiB"
          f"{' (inflated by tracemalloc)' if args.trace else ''}")
    if idle is not None and full is not None and garbage is not None:
        _report(idle, full, n, args.top)
        _report_garbage(full, garbage, n, args.top)


def _report(idle: tracemalloc.Snapshot, full: tracemalloc.Snapshot, n: int, top: int) -> None:
    keep = [tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    idle, full = idle.filter_traces(keep), full.filter_traces(keep)
    stats = full.compare_to(idle, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"tracemalloc per open stream: {total / n / 1024:.2f} KiB, "
          f"{sum(s.count_diff for s in stats) / n:.1f} blocks")
    print("\ntop sites by file:line (bytes / blocks per stream):")
    for stat in sorted(stats, key=lambda s: -s.size_diff)[:top]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / n:8.0f} B {stat.count_diff / n:6.2f}  "
              f"{short_path(frame.filename)}:{frame.lineno}")
    print("\nby the innermost frame in proxy/ (bytes / blocks per stream):")
    for (where, size, count) in _by_proxy_frame(idle, full)[:top]:
        print(f"  {size / n:8.0f} B {count / n:6.2f}  {where}")


def _report_garbage(full: tracemalloc.Snapshot, before_gc: tracemalloc.Snapshot, n: int,
                    top: int) -> None:
    stats = before_gc.compare_to(full, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"\ncyclic garbage while open (freed by gc.collect(), not counted above): "
          f"{total / n / 1024:.2f} KiB per stream")
    for stat in sorted(stats, key=lambda s: -s.size_diff)[:top // 2]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / n:8.0f} B {stat.count_diff / n:6.2f}  "
              f"{short_path(frame.filename)}:{frame.lineno}")
    print("  by the innermost frame in proxy/:")
    for (where, size, count) in _by_proxy_frame(full, before_gc)[:top // 2]:
        print(f"  {size / n:8.0f} B {count / n:6.2f}  {where}")


def _by_proxy_frame(idle: tracemalloc.Snapshot,
                    full: tracemalloc.Snapshot) -> list[tuple[str, int, int]]:
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for sign, snap in ((-1, idle), (1, full)):
        for stat in snap.statistics("traceback"):
            where = _proxy_frame(stat.traceback)
            sizes[where] += sign * stat.size
            counts[where] += sign * stat.count
    return sorted(((w, sizes[w], counts[w]) for w in sizes), key=lambda t: -t[1])


def _proxy_frame(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame in the proxy's request path, else the innermost frame (`(loop)`:
    called from the event loop, e.g. aiohttp's protocol callbacks)."""
    for frame in reversed(traceback):  # tracemalloc sorts from the oldest frame
        if _own(frame.filename):
            return f"{short_path(frame.filename)}:{frame.lineno}"
    return f"(loop) {short_path(traceback[-1].filename)}:{traceback[-1].lineno}"


def _own(path: str) -> bool:
    """The repository's code, minus what only starts the server and its loop."""
    # A venv inside the repository (the README's) holds the dependencies: not ours.
    return path.startswith(str(ROOT)) and not any(
        part in path for part in ("/site-packages/", "/bench/", "/proxy/__main__.py",
                                  "/proxy/runtime/"))


def _sites(directory: Path, n: int) -> tuple[defaultdict[str, float], defaultdict[str, float]]:
    """Bytes and blocks per open stream by file:line, from a run's two live snapshots."""
    idle = tracemalloc.Snapshot.load(str(directory / "snap-0.tracemalloc"))
    full = tracemalloc.Snapshot.load(str(directory / "snap-1.tracemalloc"))
    sizes: defaultdict[str, float] = defaultdict(float)
    counts: defaultdict[str, float] = defaultdict(float)
    for stat in full.compare_to(idle, "lineno"):
        frame = stat.traceback[0]
        where = f"{short_path(frame.filename)}:{frame.lineno}"
        sizes[where] += stat.size_diff / n
        counts[where] += stat.count_diff / n
    return sizes, counts


def diff(first: Path, second: Path, n: int, top: int) -> None:
    """Site by site: what a run (`first`) holds per open stream more than another."""
    a, a_blocks = _sites(first, n)
    b, b_blocks = _sites(second, n)
    print(f"per open stream: {sum(a.values()) / 1024:.2f} KiB ({first.name}) vs "
          f"{sum(b.values()) / 1024:.2f} KiB ({second.name}), "
          f"{(sum(a.values()) - sum(b.values())) / 1024:+.2f} KiB")
    print("largest differences (bytes, blocks per stream):")
    for where in sorted(set(a) | set(b), key=lambda w: -abs(a[w] - b[w]))[:top]:
        print(f"  {a[where] - b[where]:+7.0f} B   {a[where]:6.0f} ({a_blocks[where]:5.2f}) vs "
              f"{b[where]:6.0f} ({b_blocks[where]:5.2f})  {where}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m bench.stream_memory",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--target", choices=("proxy", "bare", "bare+uvloop"), default="proxy")
    parser.add_argument("--no-trace", dest="trace", action="store_false",
                        help="no tracemalloc: RSS per stream only")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=12,
                        help="frames per traceback (1: only allocation sites, much faster)")
    parser.add_argument("--batch", type=int, default=25,
                        help="streams started together, 0.25 s apart (a target slowed by "
                             "tracemalloc resets connections past its listen backlog)")
    parser.add_argument("--diff", type=Path, nargs=2, metavar="DIR",
                        help="compare the snapshots two earlier runs left (--streams: theirs)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("target_argv", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.diff is not None:
        diff(args.diff[0], args.diff[1], args.streams, args.top)
        return
    if args.child is not None:
        child_main(args.child, args.frames, args.target_argv)
        return
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
