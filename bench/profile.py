"""Where the proxy's time goes: py-spy samples of the proxy (and of bare, for contrast).

`python3 -m bench.profile [--scenario S1|S2|S4] [--rounds N] [--out DIR]` (needs py-spy:
`pip install py-spy`)

Starts the simulator and one target at a time, attaches `py-spy record --format raw` to it,
runs the scenario `rounds` times and summarises the collapsed stacks: self time per function,
self time per module, and inclusive time of the target's own functions, as % of the samples
in which it was running Python (py-spy leaves idle samples out). py-spy pauses the target for
each sample (no `--nonblocking`): a little slower, but every stack is consistent.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from .latency import s1_latency
from .procs import LOAD_CPU, ROOT, pin_self, raise_nofile, short_path
from .scenarios import s2_throughput, s4_requests
from .sizes import FULL
from .targets import TargetSpec, running, simulator

SCENARIOS = {"S1": s1_latency, "S2": s2_throughput, "S4": s4_requests}
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
TARGETS = (TargetSpec("proxy", "proxy"), TargetSpec("bare", "bare"))


def parse_collapsed(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    """`frame;frame;... count` lines -> [([(function, file), ...] root first, count)]."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            match = _FRAME.match(raw)
            if match is not None:
                frames.append((match["func"], short_path(match["file"])))
        if frames:
            stacks.append((frames, int(count)))
    return stacks


def summarise(stacks: list[tuple[list[tuple[str, str]], int]], top: int = 15) -> str:
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        func, file = frames[-1]
        own[f"{func} ({file})"] += count
        modules[file] += count
        for name in {f"{f} ({p})" for f, p in frames if p.startswith(("proxy/", "bench/"))}:
            inclusive[name] += count

    def table(title: str, counts: Counter[str]) -> list[str]:
        rows = [f"| {name} | {100 * n / total:.1f} % |" for name, n in counts.most_common(top)]
        return [f"| {title} | % of samples |", "| --- | --- |", *rows, ""]

    return "\n".join([f"{total} samples.", "", *table("self time: function", own),
                      *table("self time: module", modules),
                      *table("inclusive: the target's own functions", inclusive)])


async def profile(spec: TargetSpec, scenario: str, rounds: int, work: Path, raw: Path) -> str:
    run = SCENARIOS[scenario]
    async with simulator(work) as sim, running(spec, sim, work) as target:
        assert target.child is not None
        await run(target, FULL)  # warm up before sampling
        spy = await asyncio.create_subprocess_exec(
            "taskset", "-c", LOAD_CPU, "py-spy", "record", "--pid", str(target.child.popen.pid),
            "--format", "raw", "--rate", "250", "--output", str(raw),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(1.0)  # py-spy attaches
        for _ in range(rounds):
            await run(target, FULL)
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        async with asyncio.timeout(30):
            await spy.wait()
    return summarise(parse_collapsed(raw.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.profile", description=__doc__)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="S2")
    parser.add_argument("--rounds", type=int, default=1, help="scenario runs sampled per target")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    pin_self()
    raise_nofile()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    sections = []
    with tempfile.TemporaryDirectory(prefix="aoai-profile-") as tmp:
        for spec in TARGETS:
            raw = args.out / f"profile-{stamp}-{args.scenario}-{spec.name}.txt"
            summary = asyncio.run(profile(spec, args.scenario, args.rounds, Path(tmp), raw))
            sections.append(f"## {spec.name}: {args.scenario} × {args.rounds}\n\n{summary}")
    text = "# py-spy profile\n\n" + "\n".join(sections)
    (args.out / f"profile-{stamp}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
