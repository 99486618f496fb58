"""Results -> PASS/GAP verdicts, a Markdown report and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CONTENDED_NOTE = ("- ⚠ after a target: other processes used > 15 % of a CPU during that "
                  "measurement (still so after the retries), so read its figures with care; "
                  "a timing verdict that depends on it is `n/a ⚠` instead of PASS/GAP.")
Results = dict[str, dict[str, dict[str, Any]]]
"""scenario -> target name -> that scenario's result (or {"error": ...})."""


@dataclass(frozen=True)
class Check:
    scenario: str
    criterion: str
    value: str
    limit: str
    passed: bool | None
    """None: not measurable in this run (a target failed or was skipped)."""
    disturbed: bool = False
    """Another job shared the CPUs during a measurement this depends on: no verdict."""

    @property
    def verdict(self) -> str:
        if self.disturbed and self.passed is not None:
            return "n/a ⚠"
        return {True: "PASS", False: "GAP", None: "n/a"}[self.passed]


def _get(results: Results, scenario: str, target: str, *keys: str) -> Any:
    value: Any = results.get(scenario, {}).get(target, {})
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _added(results: Results, target: str, metric: str, pct: str) -> float | None:
    """Target − its concurrent direct control group, at percentile `pct`."""
    value = _get(results, "S1", target, "added", metric, pct)
    return None if value is None else float(value)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f} ms"


def _disturbed(results: Results, scenario: str, *targets: str) -> bool:
    return any(_get(results, scenario, t, "contended") for t in targets)


def checks(results: Results) -> list[Check]:
    """Issue 14's targets, all against `bare` (the pass-through on asyncio's default loop) in
    the same run. CPU contention voids the timing and CPU verdicts; memory and completion (S3)
    do not depend on it."""
    found: list[Check] = [
        _ratio_check(results, "S1", "cpu_ms_per_1k_chunks", "CPU per chunk, proxy / bare", 1.0),
        _ratio_check(results, "S1", "cpu_ms_per_1k_chunks",
                     "CPU per chunk, proxy / bare (stretch)", 0.6)]
    s1 = _disturbed(results, "S1", "proxy", "bare")
    for metric, label, slack in (("event_delay_ms", "per-event delay", 0.0),
                                 ("ttfb_ms", "TTFB", 0.3)):
        proxy, bare = (_added(results, t, metric, "p50") for t in ("proxy", "bare"))
        over = None if proxy is None or bare is None else proxy - bare
        found.append(Check("S1", f"added {label} p50 − bare's", _ms(over),
                           f"≤ {slack:+.2f} ms", None if over is None else over <= slack + 1e-9,
                           s1))
    found.append(_ratio_check(results, "S2", "cpu_ms_per_1k_chunks",
                              "CPU per 1k chunks, proxy / bare", 1.0))
    done, total = (_get(results, "S3", "proxy", k) for k in ("completed", "streams"))
    found.append(Check("S3", "streams completed", f"{done}/{total}", "all",
                       None if done is None else done == total))
    kib = _get(results, "S3", "proxy", "rss_kib_per_stream")
    found.append(Check("S3", "RSS per open stream", "—" if kib is None else f"{kib:.1f} KiB",
                       f"≤ {S3_KIB:g} KiB", None if kib is None else kib <= S3_KIB))
    found.append(_ratio_check(results, "S4", "cpu_ms_per_1k_requests",
                              "CPU per request, proxy / bare", 1.0))
    return found


S3_KIB = 36.0


def _ratio_check(results: Results, scenario: str, key: str, criterion: str,
                 limit: float) -> Check:
    proxy, bare = (_get(results, scenario, t, key) for t in ("proxy", "bare"))
    ratio = proxy / bare if proxy is not None and bare else None
    return Check(scenario, criterion, "—" if ratio is None else f"{ratio:.2f}×",
                 f"≤ {limit:.2f}×", None if ratio is None else ratio <= limit,
                 _disturbed(results, scenario, "proxy", "bare"))


def limits(results: Results, found: list[dict[str, Any]]) -> list[str]:
    """For each target missed: the measured gap and what set the pace."""
    lines = []
    for check in found:
        if check["verdict"] != "GAP":
            continue
        scenario = check["scenario"]
        head = f"{scenario} {check['criterion']}: {check['value']} (target {check['limit']})."
        proxy, bare = (results.get(scenario, {}).get(t, {}) for t in ("proxy", "bare"))
        if scenario == "S3":
            lines.append(f"{head} {_s3_pace(proxy, bare)}")
            continue
        key, unit = _PER_UNIT[scenario]
        if not proxy.get(key) or not bare.get(key):
            continue
        cost = (f"The proxy spent {proxy[key] / bare[key]:.2f}× bare's CPU per {unit} "
                f"({proxy[key]:.1f} against {bare[key]:.1f} ms per 1,000)")
        util = proxy.get("target_cpu_util") or 0.0
        bare_util = bare.get("target_cpu_util") or 0.0
        lines.append(f"{head} {cost}; {_pace(scenario, proxy, util, bare_util)}.")
    return lines


def _pace(scenario: str, proxy: dict[str, Any], util: float, bare_util: float) -> str:
    if util >= 0.85:
        return f"its core was {util:.0%} busy (bare's {bare_util:.0%}), so that cost set its rate"
    if scenario == "S1":
        # S1 is paced by the simulator's 5 ms gaps, not by a saturated core: what a piece
        # waits for is the work done on it and on the pieces ahead of it in the loop.
        return (f"its core was {util:.0%} busy (bare's {bare_util:.0%}): not saturated, so the "
                "work per piece (reads, writes, wake-ups, what the proxy does) set it")
    others = ((proxy.get("loadgen_cpu_s") or 0.0) + (proxy.get("simulator_cpu_s") or 0.0)) \
        / (proxy.get("wall_s") or 1.0)
    return (f"its core was only {util:.0%} busy: the load generator and simulator "
            f"({others:.0%} of a core) set the pace")


def _s3_pace(proxy: dict[str, Any], bare: dict[str, Any]) -> str:
    mine, theirs = proxy.get("rss_kib_per_stream"), bare.get("rss_kib_per_stream")
    if mine is None or theirs is None:
        return f"Completed {proxy.get('completed')}/{proxy.get('streams')}."
    return (f"Bare holds {theirs:.1f} KiB per open stream: the proxy's own state per stream "
            f"is {mine - theirs:+.1f} KiB on top of aiohttp's.")


_PER_UNIT = {"S1": ("cpu_ms_per_1k_chunks", "chunk"), "S2": ("cpu_ms_per_1k_chunks", "chunk"),
             "S4": ("cpu_ms_per_1k_requests", "request")}


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


Column = tuple[str, Callable[[dict[str, Any], dict[str, Any]], str]]


def _pct(metric: str, pct: str) -> Callable[[dict[str, Any], dict[str, Any]], str]:
    return lambda r, base: _num((r.get(metric) or {}).get(pct))


def _added_col(metric: str, pct: str) -> Callable[[dict[str, Any], dict[str, Any]], str]:
    def cell(r: dict[str, Any], base: dict[str, Any]) -> str:
        value = ((r.get("added") or {}).get(metric) or {}).get(pct)
        return "—" if value is None else f"{value:+.2f}"
    return cell


def _control(metric: str, pct: str) -> Callable[[dict[str, Any], dict[str, Any]], str]:
    return lambda r, base: _num(((r.get("control") or {}).get(metric) or {}).get(pct))


def _spread(name: str) -> Callable[[dict[str, Any], dict[str, Any]], str]:
    """min–max of per-round values."""
    def cell(r: dict[str, Any], base: dict[str, Any]) -> str:
        values = r.get(name) or []
        return f"{min(values):.1f}–{max(values):.1f}" if values else "—"
    return cell


def _key(name: str, digits: int = 2) -> Callable[[dict[str, Any], dict[str, Any]], str]:
    return lambda r, base: _num(r.get(name), digits)


def _vs_bare(name: str) -> Callable[[dict[str, Any], dict[str, Any]], str]:
    return lambda r, bare: (_num(r[name] / bare[name]) + "×"
                            if r.get(name) is not None and bare.get(name) else "—")


def _ok(r: dict[str, Any], base: dict[str, Any]) -> str:
    return f"{r.get('completed')}/{r.get('streams', r.get('requests'))}"


COLUMNS: dict[str, tuple[str, list[Column]]] = {
    "S1": ("bare", [
        ("ok", _ok), ("CPU µs / chunk", _key("cpu_ms_per_1k_chunks", 1)),
        ("CPU vs bare", _vs_bare("cpu_ms_per_1k_chunks")), ("TTFB p50", _pct("ttfb_ms", "p50")), ("TTFB p99", _pct("ttfb_ms", "p99")),
        ("TTFT p50", _pct("ttft_ms", "p50")), ("TTFT p99", _pct("ttft_ms", "p99")),
        ("event delay p50", _pct("event_delay_ms", "p50")),
        ("event delay p99", _pct("event_delay_ms", "p99")),
        ("+TTFB p50", _added_col("ttfb_ms", "p50")), ("+TTFT p50", _added_col("ttft_ms", "p50")),
        ("+event delay p50", _added_col("event_delay_ms", "p50")),
        ("+event delay p99", _added_col("event_delay_ms", "p99")),
        ("control event delay p50", _control("event_delay_ms", "p50")),
        ("control event delay p99", _control("event_delay_ms", "p99")),
        ("target CPU util", _key("target_cpu_util")), ("other CPU s", _key("other_cpu_s"))]),
    "S2": ("bare", [
        ("ok", _ok), ("chunks/s", _key("chunks_per_s", 0)), ("target CPU s", _key("target_cpu_s")),
        ("CPU util", _key("target_cpu_util")), ("CPU ms / 1k chunks", _key("cpu_ms_per_1k_chunks")),
        ("per round", _spread("cpu_ms_per_1k_chunks_rounds")),
        ("CPU vs bare", _vs_bare("cpu_ms_per_1k_chunks")),
        ("chunks/s vs bare", _vs_bare("chunks_per_s")),
        ("events / client read", _key("events_per_client_read")),
        ("loadgen CPU s", _key("loadgen_cpu_s")), ("sim CPU s", _key("simulator_cpu_s")),
        ("other CPU s", _key("other_cpu_s")), ("softirq s", _key("softirq_cpu_s"))]),
    "S3": ("bare", [
        ("ok", _ok), ("idle RSS MiB", _key("idle_rss_mib", 1)),
        ("RSS all open MiB", _key("open_rss_mib", 1)),
        ("KiB / stream", _key("rss_kib_per_stream", 1)), ("target CPU s", _key("target_cpu_s")),
        ("other CPU s", _key("other_cpu_s")), ("softirq s", _key("softirq_cpu_s"))]),
    "S4": ("bare", [
        ("ok", _ok), ("req/s", _key("requests_per_s", 0)), ("target CPU s", _key("target_cpu_s")),
        ("CPU util", _key("target_cpu_util")),
        ("CPU ms / 1k req", _key("cpu_ms_per_1k_requests")),
        ("req/s vs bare", _vs_bare("requests_per_s")),
        ("CPU vs bare", _vs_bare("cpu_ms_per_1k_requests")),
        ("loadgen CPU s", _key("loadgen_cpu_s")), ("sim CPU s", _key("simulator_cpu_s")),
        ("other CPU s", _key("other_cpu_s")), ("softirq s", _key("softirq_cpu_s"))]),
}


def scenario_table(scenario: str, by_target: dict[str, dict[str, Any]]) -> list[str]:
    base_name, columns = COLUMNS[scenario]
    base = by_target.get(base_name, {})
    rows = []
    for target, result in by_target.items():
        if "error" in result:
            rows.append([target, f"failed: {result['error']}"] + [""] * (len(columns) - 1))
        else:
            name = f"{target} ⚠" if result.get("contended") else target
            rows.append([name] + [cell(result, base) for _, cell in columns])
    return _table(["target"] + [name for name, _ in columns], rows)


def markdown(run: dict[str, Any]) -> str:
    meta = run["meta"]
    lines = [f"# Benchmark results ({run['mode']} run, {meta['utc']})", "",
             (f"Commit `{meta['commit']}`{' (working tree modified)' if meta['dirty'] else ''}; "
              f"{meta['cpu_model']}, {meta['cores']} cores; Python {meta['python']}, "
              f"aiohttp {meta['aiohttp']}, nginx {meta['nginx'] or 'not installed'}; "
              f"run took {meta['duration_s']:.0f} s."), ""]
    lines += [f"- {note}" for note in run["notes"]]
    lines += [CONTENDED_NOTE, ""]
    lines += ["## Targets", ""] + _table(
        ["scenario", "criterion", "value", "target", "verdict"],
        [[c["scenario"], c["criterion"], c["value"], c["limit"], f"**{c['verdict']}**"]
         for c in run["checks"]]) + [""]
    gaps = limits(run["results"], run["checks"])
    lines += ["What limits a missed target:", ""] + [f"- {g}" for g in gaps] + [""] if gaps else []
    units = {"S1": (" (times in ms; event delay = a content chunk's arrival at the client − "
                    "the send time the simulator stamped into it; + = target − the direct "
                    "control streams run with it)"),
             "S3": "", "S2": "", "S4": ""}
    for scenario, by_target in run["results"].items():
        lines += [f"## {scenario}: {run['scenarios'][scenario]}{units[scenario]}", ""]
        lines += scenario_table(scenario, by_target) + [""]
        lines += [f"- {line}" for line in variants(scenario, by_target)]
        lines += [""] if variants(scenario, by_target) else []
    return "\n".join(lines)


VARIANT_KEYS = {"S1": (("cpu_ms_per_1k_chunks", "CPU per chunk"),),
                "S2": (("chunks_per_s", "chunks/s"), ("cpu_ms_per_1k_chunks", "CPU per 1k chunks")),
                "S4": (("requests_per_s", "req/s"), ("cpu_ms_per_1k_requests", "CPU per 1k req"))}
VARIANTS = (("bare+uvloop", "bare", "the pass-through on uvloop"),
            ("proxy-asyncio", "proxy", "asyncio's own loop"),
            ("proxy+log", "proxy", "access log on"),
            ("proxy-w2", "proxy", "2 workers, unpinned"))


def variants(scenario: str, by_target: dict[str, dict[str, Any]]) -> list[str]:
    """Each variant (bare on uvloop; the proxy on the stock loop, with the access log, with
    2 workers) against the row it varies."""
    found = []
    for name, against, label in VARIANTS:
        mine, base = by_target.get(name, {}), by_target.get(against, {})
        parts = [f"{what} {mine[key] / base[key]:.2f}×"
                 for key, what in VARIANT_KEYS.get(scenario, ())
                 if mine.get(key) is not None and base.get(key)]
        if parts and name == "proxy-w2" and mine.get("chunks_per_s") and base.get("chunks_per_s"):
            share = mine["chunks_per_s"] / (2 * base["chunks_per_s"])
            parts.append(f"{share:.0%} of 2× the one pinned worker's chunks/s")
        if parts:
            found.append(f"{name} ({label}) vs {against}: " + ", ".join(parts))
    return found


def check_dicts(found: list[Check]) -> list[dict[str, Any]]:
    return [{**asdict(c), "verdict": c.verdict} for c in found]


def write(run: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / f"{stamp}.md", out_dir / f"{stamp}.json"
    md.write_text(markdown(run))
    js.write_text(json.dumps(run, indent=2, default=str) + "\n")
    return md, js
