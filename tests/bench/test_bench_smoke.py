"""Smoke test of the benchmark (`python3 -m bench --smoke`): it runs end to end in seconds,
every target produces results, every stream completes and the reports are written.

No timing assertions: how fast this machine is, is not what is tested here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("S1", "S2", "S3", "S4")


def _have_nginx() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("bench-out")
    results_md = ROOT / "bench" / "RESULTS.md"
    before = results_md.stat().st_mtime_ns if results_md.exists() else None
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=200, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    after = results_md.stat().st_mtime_ns if results_md.exists() else None
    assert before == after, "a smoke run must not overwrite bench/RESULTS.md"
    [report] = out.glob("*.json")
    return out, json.loads(report.read_text())


@pytest.mark.timeout(240)
def test_reports_are_written(smoke_run: tuple[Path, dict[str, object]]) -> None:
    out, run = smoke_run
    assert [p.suffix for p in sorted(out.iterdir())] == [".json", ".md"]
    assert run["mode"] == "smoke"
    table = next(out.glob("*.md")).read_text()
    # A row per target; "⚠" marks a measurement another process disturbed (no failure).
    assert re.search(r"^\| proxy( ⚠)? \| 6/6 \|", table, re.MULTILINE), table


@pytest.mark.timeout(240)
def test_every_target_completes_every_stream(
        smoke_run: tuple[Path, dict[str, object]]) -> None:
    if os.environ.get("CI") and not _have_nginx():
        pytest.fail("nginx is not installed; with CI set the nginx target is required")
    results = smoke_run[1]["results"]
    assert isinstance(results, dict)
    expected = {"direct", "bare", "bare+uvloop", "proxy"} | (
        {"nginx"} if _have_nginx() else set())
    for scenario in SCENARIOS:
        by_target = results[scenario]
        stock_loop = {"proxy-asyncio"} if scenario != "S3" else set()
        assert expected | stock_loop <= by_target.keys(), scenario
        for target, result in by_target.items():
            assert "error" not in result, (scenario, target, result)
            total = result["requests"] if scenario == "S4" else result["streams"]
            assert result["completed"] == total > 0, (scenario, target, result)


@pytest.mark.timeout(240)
def test_every_target_checked_against_bare_has_its_cpu_figures(
        smoke_run: tuple[Path, dict[str, object]]) -> None:
    """The targets are ratios to bare: CPU per chunk in S1 and S2, per request in S4."""
    results = smoke_run[1]["results"]
    assert isinstance(results, dict)
    for scenario, key in (("S1", "cpu_ms_per_1k_chunks"), ("S2", "cpu_ms_per_1k_chunks"),
                          ("S4", "cpu_ms_per_1k_requests")):
        for target in ("bare", "bare+uvloop", "proxy", "proxy-asyncio"):
            assert results[scenario][target][key] > 0, (scenario, target)
    checks = smoke_run[1]["checks"]
    assert isinstance(checks, list)
    assert {c["criterion"] for c in checks} >= {
        "CPU per chunk, proxy / bare", "added per-event delay p50 − bare's",
        "added TTFB p50 − bare's", "CPU per 1k chunks, proxy / bare", "RSS per open stream",
        "CPU per request, proxy / bare"}


@pytest.mark.timeout(240)
def test_tls_runs_every_target_over_https(tmp_path: Path) -> None:
    """`--tls`: the simulator speaks only https, so a completed request went through TLS."""
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--tls", "--scenarios", "S4",
                           "--targets", "direct,bare,proxy", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=200, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    [report] = tmp_path.glob("*.json")
    run = json.loads(report.read_text())
    assert any("--tls" in note for note in run["notes"])
    for target in ("direct", "bare", "proxy"):
        result = run["results"]["S4"][target]
        assert "error" not in result and result["completed"] == result["requests"] > 0, result
