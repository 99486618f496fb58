"""The dashboard and the alert rules against a real Prometheus scraping a real proxy.

The simulator and the proxy run in-process on ephemeral ports; Debian's `prometheus` binary
scrapes the proxy every second and evaluates the shipped prometheus/alerts.yml. After a mix of
every scenario the simulator knows (plus the load generator's mix), every query of the Grafana
dashboard (with "All" and with one deployment and client selected) and every rule expression
is evaluated through Prometheus' HTTP API. None may fail; every dashboard query must return
data that is not all NaN, except those listed in `NO_DATA_EXPECTED`; and every rate query must
see the traffic (a value > 0), except those listed in `ZERO_EXPECTED`.

Needs `prometheus` (Debian: `apt-get install prometheus`): fails without it when the CI
environment variable is set, skipped otherwise.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.traffic.generator import run_loadgen
from tests.conftest import Running
from tests.e2e.conftest import (
    ALERTS,
    SCENARIOS,
    Prometheus,
    PrometheusFactory,
    routed,
    send_round,
    shipped_job_name,
    wait_until_idle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
ABORTS_PER_ROUND = sum(s.abort_after_chunks is not None for s in SCENARIOS)


def disconnects(proxy: Running) -> float:
    assert proxy.registry is not None
    return sum(sample.value for family in proxy.registry.collect() for sample in family.samples
               if sample.name == "aoai_proxy_client_disconnects_total")
DASHBOARD = ROOT / "grafana" / "dashboards" / "aoai-stream-proxy.json"

# Grafana's built-in variables for a 1 s scrape interval. The rate window spans the whole
# traffic phase of this test (a few seconds) with room to spare, and holds dozens of samples.
GRAFANA_INTERVALS = {
    "__rate_interval": "30s",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1m",
    "__range_s": "60",
    "__range_ms": "60000",
}
# The dashboard's own variables, as Grafana fills them in: "All" is the allValue `.*`, which
# also matches a series without the label; one value catches a filter on a label the metric
# does not have (that query comes back empty).
SELECTIONS = {
    "all": {"deployment": ".*", "client": ".*"},
    "one": {"deployment": "gpt-4o", "client": "unknown"},
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")

# Dashboard panels whose queries may come back empty in a test this short, with the reason.
# Key: panel title (refId after a slash to name one query of a panel). Keep it short: every
# entry is a panel this test cannot vouch for.
NO_DATA_EXPECTED: dict[str, str] = {}

# Rate queries whose value may be 0 here; every other rate query must see traffic.
ZERO_EXPECTED: dict[str, str] = {
    "Stream parse errors": "the simulator only sends well-formed JSON events and bodies, so "
    "the observer never fails to parse one",
    "Failovers/s by reason, and the proxy's own 429s/B": "cooldowns are off here so every "
    "scenario keeps its status (tests/integration/test_routing.py counts the proxy's own 429s)",
    "PTU spillovers/s": "the simulator has no provisioned deployments, so Azure's spillover "
    "header never comes (tests/integration/test_routing.py counts one)",
}

ROUNDS = 4
"""Rounds of every scenario; a scrape falls between rounds so each new series grows."""


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from."""

    source: str
    name: str
    expr: str


def substitute(expr: str, variables: dict[str, str]) -> str:
    """`expr` with Grafana's template variables replaced by `variables`."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in variables:
            raise AssertionError(f"unknown template variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(value, expr)


def walk_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    found = []
    for panel in panels:
        found.append(panel)
        found += walk_panels(panel.get("panels", []))
    return found


def dashboard_queries(selection: str) -> list[Query]:
    """Every query of the dashboard, named `panel title/refId`, for one variable selection."""
    variables = {**GRAFANA_INTERVALS, **SELECTIONS[selection]}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = []
    for panel in walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue
            name = f"{panel['title']}/{target['refId']}"
            queries.append(Query(f"dashboard[{selection}]", name,
                                 substitute(target["expr"], variables)))
    return queries


def rule_queries() -> list[Query]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [Query("rule", f"{group['name']}/{rule.get('alert') or rule.get('record')}",
                  rule["expr"])
            for group in groups for rule in group["rules"]]


def panel_of(name: str) -> str:
    return name.rpartition("/")[0]


def listed(name: str, allow: dict[str, str]) -> bool:
    return name in allow or panel_of(name) in allow


def values(data: dict[str, Any]) -> list[float]:
    """The sample values of an instant query's `data` (vector, scalar or matrix)."""
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return [float(result[1])]
    if kind == "vector":
        return [float(series["value"][1]) for series in result]
    if kind == "matrix":
        return [float(v) for series in result for _, v in series["values"]]
    return []


async def query(http: aiohttp.ClientSession, prom: Prometheus, expr: str) -> dict[str, Any]:
    return await prom.api(http, "query", query=expr)


async def last_scrape(http: aiohttp.ClientSession, prom: Prometheus, job: str) -> float:
    """Time of the latest scrape of `job` that Prometheus stored (0 before the first)."""
    answer = await query(http, prom, f'timestamp(up{{job="{job}"}})')
    found = values(answer["data"]) if answer.get("status") == "success" else []
    return max(found, default=0.0)


async def wait_for_scrape(http: aiohttp.ClientSession, prom: Prometheus, job: str,
                          timeout: float = 10.0) -> None:
    """Until a scrape that started after now is stored."""
    now = time.time()
    deadline = time.monotonic() + timeout
    while await last_scrape(http, prom, job) <= now:
        assert time.monotonic() < deadline, f"no scrape of {job} for {timeout} s:\n" \
            + prom.log_tail()
        await asyncio.sleep(0.1)


async def check_target(http: aiohttp.ClientSession, prom: Prometheus, job: str,
                       proxy: Running) -> None:
    answer = await prom.api(http, "targets")
    targets = [t for t in answer["data"]["activeTargets"] if t["labels"].get("job") == job]
    assert len(targets) == 1, answer
    (target,) = targets
    assert target["scrapeUrl"] == proxy.url + "/metrics"
    assert target["health"] == "up", target
    assert target["lastError"] == "", target


async def check_rules(http: aiohttp.ClientSession, prom: Prometheus,
                      timeout: float = 15.0) -> None:
    """The shipped groups and rules are loaded, evaluated, and healthy."""
    shipped = {group["name"]: [rule.get("alert") or rule.get("record")
                               for rule in group["rules"]]
               for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]}
    deadline = time.monotonic() + timeout
    while True:
        answer = await prom.api(http, "rules")
        assert answer["status"] == "success", answer
        groups = answer["data"]["groups"]
        loaded = {group["name"]: [rule["name"] for rule in group["rules"]] for group in groups}
        assert loaded == shipped
        rules = [rule for group in groups for rule in group["rules"]]
        if all(rule["health"] != "unknown" for rule in rules) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    unhealthy = {rule["name"]: (rule["health"], rule.get("lastError")) for rule in rules
                 if rule["health"] != "ok"}
    assert not unhealthy, f"rules not healthy: {unhealthy}"
    for group in groups:
        assert Path(group["file"]).resolve() == ALERTS.resolve()


async def evaluate(http: aiohttp.ClientSession, prom: Prometheus,
                   queries: list[Query]) -> tuple[list[str], dict[str, list[float]]]:
    """Problems (errors, warnings) and the values of each query, by name."""
    problems: list[str] = []
    results: dict[str, list[float]] = {}
    for q in queries:
        answer = await query(http, prom, q.expr)
        if answer.get("status") != "success":
            problems.append(f"{q.source} {q.name}: {answer.get('errorType')}: "
                            f"{answer.get('error')}\n    {q.expr}")
            continue
        if answer.get("warnings"):
            problems.append(f"{q.source} {q.name}: warnings {answer['warnings']}\n    {q.expr}")
        results[f"{q.source} {q.name}"] = values(answer["data"])
    return problems, results


async def test_dashboard_and_alerts_on_real_prometheus(
        start_simulator: Callable[..., Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]],
        start_prometheus: PrometheusFactory) -> None:
    started = time.monotonic()
    dashboard = [q for selection in SELECTIONS for q in dashboard_queries(selection)]
    rules = rule_queries()
    assert dashboard and rules
    names = [q.name for q in dashboard_queries("all")]
    assert len(names) == len(set(names)), "panel title + refId must name one query"
    for allow in (NO_DATA_EXPECTED, ZERO_EXPECTED):
        stale = [key for key in allow if key not in names and
                 key not in {panel_of(n) for n in names}]
        assert not stale, f"allow-list entries naming no dashboard query: {stale}"

    simulator, second = await start_simulator(), await start_simulator()
    proxy = await start_proxy(simulator.url, **routed(simulator, second))
    job = shipped_job_name()
    prom = await start_prometheus(proxy.url.removeprefix("http://"))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        await wait_for_scrape(http, prom, job)
        stop = asyncio.Event()
        loadgen = asyncio.create_task(run_loadgen(
            proxy.url, duration=40, concurrency=3, max_requests=2000, seed=11,
            time_scale=0.05, quiet=True, stop=stop))
        try:
            for _ in range(ROUNDS):
                before = disconnects(proxy)
                statuses = await send_round(http, proxy.url)
                assert {0, 200, 400, 404, 429, 500} <= set(statuses), statuses
                # The round's hang-ups are recorded once the proxy notices them (the load
                # generator's add to the count too, so this is a lower bound).
                async with asyncio.timeout(10):
                    while disconnects(proxy) < before + ABORTS_PER_ROUND:
                        await asyncio.sleep(0.01)
                await wait_for_scrape(http, prom, job)
        finally:
            stop.set()
            report = await loadgen
        assert report.sent and not report.errors.keys() - {"ClientPayloadError"}, \
            report.summary()
        await wait_until_idle(proxy)
        await wait_for_scrape(http, prom, job)

        await check_target(http, prom, job, proxy)
        await check_rules(http, prom)
        problems, results = await evaluate(http, prom, dashboard + rules)

    for q in dashboard:
        found = results.get(f"{q.source} {q.name}")
        if found is None:
            continue  # an error, already a problem
        if listed(q.name, NO_DATA_EXPECTED):
            continue
        if not found:
            problems.append(f"{q.source} {q.name}: no data\n    {q.expr}")
        elif all(math.isnan(v) for v in found):
            problems.append(f"{q.source} {q.name}: only NaN {found}\n    {q.expr}")
        elif "rate(" in q.expr and not listed(q.name, ZERO_EXPECTED) and \
                not any(v > 0 for v in found):
            problems.append(f"{q.source} {q.name}: traffic flowed but it is {found}\n"
                            f"    {q.expr}")
    assert not problems, "\n".join(problems)
    assert time.monotonic() - started < 60
