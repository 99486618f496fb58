"""The report says what limits a missed throughput or CPU target, from the figures measured."""

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


def lines_for(results: report.Results) -> list[str]:
    found: list[dict[str, Any]] = report.check_dicts(report.checks(results))
    return report.limits(results, found)


def test_a_saturated_proxy_is_named_as_the_limit_with_its_cost() -> None:
    [line] = lines_for(s4(1400.0, 0.95))
    assert line.startswith("S4 requests/s, proxy / bare: 0.70× (target ≥ 0.80×).")
    assert "1.70× bare's CPU per request (678.6 against 400.0 ms per 1,000)" in line
    assert "its core was 95% busy (bare's 80%)" in line


def test_an_idle_proxy_points_at_the_load_generator() -> None:
    [line] = lines_for(s4(1400.0, 0.5))
    assert "its core was only 50% busy" in line and "(90% of a core) set the pace" in line


def test_a_met_target_gets_no_line() -> None:
    assert lines_for(s4(1900.0, 0.9)) == []
