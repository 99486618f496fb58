"""The report checks issue 14's targets against bare in the same run, and says what limits a
missed one, from the figures measured."""

from __future__ import annotations

from typing import Any

from bench import report


def s4(proxy_rps: float, proxy_util: float) -> report.Results:
    common = {"wall_s": 10.0, "loadgen_cpu_s": 4.0, "simulator_cpu_s": 5.0}
    return {"S4": {
        "bare": {**common, "requests_per_s": 2000.0, "cpu_ms_per_1k_requests": 400.0,
                 "target_cpu_util": 0.8},
        "proxy": {**common, "requests_per_s": proxy_rps,
                  "cpu_ms_per_1k_requests": 1000 * proxy_util / proxy_rps * 1000,
                  "target_cpu_util": proxy_util},
    }}


def s1(proxy_cpu: float, proxy_delay: float, proxy_ttfb: float) -> report.Results:
    """bare: 80 µs per chunk, +1.0 ms per-event delay and +0.5 ms TTFB at p50."""
    def row(cpu: float, delay: float, ttfb: float) -> dict[str, Any]:
        return {"cpu_ms_per_1k_chunks": cpu, "target_cpu_util": 0.4, "wall_s": 3.0,
                "added": {"event_delay_ms": {"p50": delay, "p99": delay * 3},
                          "ttfb_ms": {"p50": ttfb, "p99": ttfb * 2}}}
    return {"S1": {"bare": row(80.0, 1.0, 0.5), "proxy": row(proxy_cpu, proxy_delay, proxy_ttfb)}}


def by_criterion(results: report.Results) -> dict[str, report.Check]:
    return {c.criterion: c for c in report.checks(results)}


def lines_for(results: report.Results) -> list[str]:
    found: list[dict[str, Any]] = report.check_dicts(report.checks(results))
    return report.limits(results, found)


def test_a_saturated_proxy_is_named_as_the_limit_with_its_cost() -> None:
    [line] = lines_for(s4(1400.0, 0.95))
    assert line.startswith("S4 CPU per request, proxy / bare: 1.70× (target ≤ 1.00×).")
    assert "1.70× bare's CPU per request (678.6 against 400.0 ms per 1,000)" in line
    assert "its core was 95% busy (bare's 80%)" in line


def test_an_idle_proxy_points_at_the_load_generator() -> None:
    [line] = lines_for(s4(1400.0, 0.6))
    assert "its core was only 60% busy" in line and "(90% of a core) set the pace" in line


def test_cpu_per_request_at_bares_passes_and_gets_no_line() -> None:
    results = s4(2000.0, 0.8)  # the same CPU per request as bare: exactly 1.00×
    assert by_criterion(results)["CPU per request, proxy / bare"].verdict == "PASS"
    assert lines_for(results) == []


def test_s1_cpu_per_chunk_against_bare_and_the_stretch() -> None:
    checks = by_criterion(s1(70.0, 1.0, 0.5))
    assert checks["CPU per chunk, proxy / bare"].value == "0.88×"
    assert checks["CPU per chunk, proxy / bare"].verdict == "PASS"
    assert checks["CPU per chunk, proxy / bare (stretch)"].verdict == "GAP"
    assert by_criterion(s1(48.0, 1.0, 0.5))["CPU per chunk, proxy / bare (stretch)"].verdict \
        == "PASS"


def test_s1_delay_must_not_exceed_bares_and_ttfb_gets_0_3_ms() -> None:
    checks = by_criterion(s1(80.0, 1.0, 0.8))
    assert checks["added per-event delay p50 − bare's"].verdict == "PASS"  # equal to bare's
    assert checks["added TTFB p50 − bare's"].verdict == "PASS"  # +0.3 ms: the allowance
    checks = by_criterion(s1(80.0, 1.05, 0.85))
    assert checks["added per-event delay p50 − bare's"].verdict == "GAP"
    assert checks["added per-event delay p50 − bare's"].value == "+0.05 ms"
    assert checks["added TTFB p50 − bare's"].verdict == "GAP"


def test_a_missed_s1_target_names_the_work_per_piece_when_the_core_is_not_saturated() -> None:
    lines = lines_for(s1(100.0, 1.5, 0.5))
    assert lines[0].startswith("S1 CPU per chunk, proxy / bare: 1.25× (target ≤ 1.00×).")
    delay = next(line for line in lines if "per-event delay" in line)
    assert "1.25× bare's CPU per chunk (100.0 against 80.0 ms per 1,000)" in delay
    assert "its core was 40% busy (bare's 40%): not saturated" in delay


def test_a_disturbed_measurement_gives_no_verdict() -> None:
    results = s1(100.0, 1.0, 0.5)
    results["S1"]["bare"]["contended"] = True
    assert by_criterion(results)["CPU per chunk, proxy / bare"].verdict == "n/a ⚠"


def test_s3_holds_36_kib_per_open_stream() -> None:
    def s3(kib: float) -> report.Results:
        return {"S3": {"bare": {"rss_kib_per_stream": 30.0, "completed": 2000, "streams": 2000},
                       "proxy": {"rss_kib_per_stream": kib, "completed": 2000,
                                 "streams": 2000}}}

    assert by_criterion(s3(36.0))["RSS per open stream"].verdict == "PASS"
    assert by_criterion(s3(36.5))["RSS per open stream"].verdict == "GAP"
    [line] = lines_for(s3(38.0))
    assert "the proxy's own state per stream is +8.0 KiB" in line


def test_variants_show_the_loops_and_the_share_of_two_workers() -> None:
    by_target = {"bare": {"cpu_ms_per_1k_chunks": 20.0, "chunks_per_s": 50_000.0},
                 "bare+uvloop": {"cpu_ms_per_1k_chunks": 16.0, "chunks_per_s": 55_000.0},
                 "proxy": {"cpu_ms_per_1k_chunks": 19.0, "chunks_per_s": 50_000.0},
                 "proxy-asyncio": {"cpu_ms_per_1k_chunks": 23.75, "chunks_per_s": 45_000.0},
                 "proxy-w2": {"cpu_ms_per_1k_chunks": 21.0, "chunks_per_s": 70_000.0}}
    lines = report.variants("S2", by_target)
    assert "bare+uvloop (the pass-through on uvloop) vs bare: chunks/s 1.10×, " \
           "CPU per 1k chunks 0.80×" in lines
    assert any(line.startswith("proxy-asyncio (asyncio's own loop) vs proxy: ")
               and "CPU per 1k chunks 1.25×" in line for line in lines)
    assert any("70% of 2× the one pinned worker's chunks/s" in line for line in lines)
