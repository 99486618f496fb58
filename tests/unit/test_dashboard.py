"""The Grafana dashboard only queries what the proxy exports, the way Grafana needs it."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from proxy.observe.semantics import Observation
from proxy.relay.exchange import Exchange
from proxy.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "dashboards" / "aoai-stream-proxy.json"
DATASOURCE_PROVISIONING = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DS = "${datasource}"

# Labels of every metric, from the metrics contract. test_contract_matches_registry keeps this
# table honest against the real registry.
CONTRACT_LABELS: dict[str, set[str]] = {
    "aoai_proxy_requests_total": {"deployment", "client", "operation", "stream", "status_code"},
    "aoai_proxy_request_duration_seconds": {"deployment", "client", "stream"},
    "aoai_proxy_time_to_first_byte_seconds": {"deployment", "client", "stream"},
    "aoai_proxy_time_to_first_token_seconds": {"deployment", "client"},
    "aoai_proxy_time_per_output_token_seconds": {"deployment", "client"},
    "aoai_proxy_output_tokens_per_second": {"deployment", "client"},
    "aoai_proxy_tokens_total": {"deployment", "client", "token_type"},
    "aoai_proxy_estimated_completion_tokens_total": {"deployment", "client"},
    "aoai_proxy_finish_reasons_total": {"deployment", "client", "finish_reason"},
    "aoai_proxy_content_filter_events_total": {"deployment", "client", "stage", "category"},
    "aoai_proxy_rate_limited_total": {"deployment", "client"},
    "aoai_proxy_retry_after_seconds": {"deployment"},
    "aoai_proxy_upstream_errors_total": {"deployment", "error_type"},
    "aoai_proxy_client_disconnects_total": {"deployment", "client"},
    "aoai_proxy_in_flight_requests": {"deployment"},
    "aoai_proxy_upstream_ratelimit_remaining": {"deployment", "resource"},
    "aoai_proxy_stream_parse_errors_total": {"deployment"},
    "aoai_proxy_upstream_requests_total": {"deployment", "upstream", "status_code"},
    "aoai_proxy_failovers_total": {"deployment", "upstream", "reason"},
    "aoai_proxy_upstream_cooling_down": {"deployment", "upstream"},
    "aoai_proxy_spillovers_total": {"deployment"},
    "aoai_proxy_cooling_down_rejections_total": {"deployment"},
    "aoai_proxy_upstream_time_to_first_token_seconds": {"deployment", "upstream"},
    "aoai_proxy_upstream_request_duration_seconds": {"deployment", "upstream"},
}
# Series Prometheus itself makes for a scrape job.
PROMETHEUS_SERIES = {"up": {"job", "instance"}}

_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[([^\]]*)\]")


def family_of(series: str) -> str:
    """`x_bucket` / `x_sum` / `x_count` -> `x` for histograms; other names unchanged."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and base in CONTRACT_LABELS and not base.endswith("_total"):
            return base
    return series


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


@pytest.fixture(scope="module")
def exported() -> dict[str, str]:
    """Every series name the real `Metrics` registers -> its metric family name."""
    registry = CollectorRegistry()
    Metrics(registry, ["gpt-4o", "gpt-4o-mini"], ["app"])
    names: dict[str, str] = {}
    for family in registry.collect():
        if family.type == "counter":
            names[f"{family.name}_total"] = f"{family.name}_total"
        elif family.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[family.name + suffix] = family.name
        else:
            names[family.name] = family.name
    return names


def exercised_registry() -> CollectorRegistry:
    """The real `Metrics` after two exchanges that between them touch every metric, so each
    family has samples whose label names can be read."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, ["gpt-4o"], ["app"], routes=[("gpt-4o", "east")])
    metrics.cooling.source = lambda: [("gpt-4o", "east", False)]
    obs = Observation(first_token_at=1.0, last_token_at=2.0, output_deltas=5,
                      choices_seen={0}, finish_reasons={0: "content_filter"},
                      choice_filter_categories={0: {"hate"}})
    metrics.record(Exchange(started=0.0, wall_time=0.0, method="POST", path="/",
                            deployment="gpt-4o", stream=True, status=200, first_byte_at=0.5,
                            ended_at=3.0, ratelimit_remaining={"tokens": 10},
                            observation=obs, upstream="east", attempt_started=0.2,
                            attempts=[("east", "429"), ("east", "200")],
                            failovers=[("east", "429")], spillover=True))
    metrics.record(Exchange(started=0.0, wall_time=0.0, method="POST", path="/",
                            deployment="gpt-4o", status=429, retry_after=1.0, ended_at=0.1,
                            cooling_wait=1.0))
    return registry


@pytest.fixture(scope="module")
def exported_labels() -> dict[str, set[str]]:
    """Metric family (as queried: counters with `_total`) -> the label names it exports."""
    labels: dict[str, set[str]] = {}
    for family in exercised_registry().collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        names = labels.setdefault(name, set())
        for sample in family.samples:
            names.update(set(sample.labels) - {"le"})
    return labels


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in walk_panels(dashboard["panels"]) if p["type"] != "row"]


def all_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in query_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def test_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "aoai-stream-proxy"
    assert dashboard["id"] is None, "provisioned dashboards must not carry a database id"
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("deployment", "client"):
        var = variables[name]
        assert var["type"] == "query"
        assert var["datasource"]["uid"] == DS
        assert var["multi"] is True
        assert var["includeAll"] is True
        assert var["allValue"] == ".*"
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert query == var["definition"]
        assert re.fullmatch(
            rf"label_values\(aoai_proxy_requests_total(\{{[^}}]*\}})?, {name}\)", query
        ), query


def test_datasource_variable_defaults_to_the_provisioned_datasource(
    dashboard: dict[str, Any],
) -> None:
    provisioned = yaml.safe_load(DATASOURCE_PROVISIONING.read_text(encoding="utf-8"))
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == source["uid"]


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in walk_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), ids
    assert all(isinstance(i, int) for i in ids)


def test_every_panel_has_datasource_unit_and_query(dashboard: dict[str, Any]) -> None:
    panels = query_panels(dashboard)
    assert len(panels) >= 25
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": DS}, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel.get("description"), f"{title}: no description"
        assert panel["targets"], f"{title}: no targets"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{title}: empty expr"
            assert target["datasource"]["uid"] == DS, title
            assert target.get("legendFormat"), f"{title}: no legend"


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in walk_panels(dashboard["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_contract_matches_registry(exported: dict[str, str],
                                   exported_labels: dict[str, set[str]]) -> None:
    families = set(exported.values())
    assert families == set(CONTRACT_LABELS), families ^ set(CONTRACT_LABELS)
    assert set(exported_labels) == families
    for family, labels in CONTRACT_LABELS.items():
        assert exported_labels[family] == labels, (
            f"{family}: exports labels {sorted(exported_labels[family])}, the contract "
            f"(and so the dashboard) says {sorted(labels)}")


def test_every_metric_used_is_exported(dashboard: dict[str, Any], exported: dict[str, str]) -> None:
    for title, expr in all_exprs(dashboard):
        for name in re.findall(r"\baoai_proxy_[a-z0-9_]+\b", expr):
            assert name in exported, f"{title}: {name} is not exported by the proxy"
        for name, _ in _SELECTOR.findall(expr):
            assert name in exported or name in PROMETHEUS_SERIES, f"{title}: unknown {name}"


def test_every_exported_metric_is_on_the_dashboard(
    dashboard: dict[str, Any], exported: dict[str, str]
) -> None:
    text = " ".join(expr for _, expr in all_exprs(dashboard))
    used = {exported[n] for n in re.findall(r"\baoai_proxy_[a-z0-9_]+\b", text) if n in exported}
    assert used == set(exported.values()), set(exported.values()) - used


def test_selectors_filter_by_the_template_variables(dashboard: dict[str, Any]) -> None:
    for title, expr in all_exprs(dashboard):
        for name, body in _SELECTOR.findall(expr):
            labels = CONTRACT_LABELS.get(family_of(name)) or PROMETHEUS_SERIES[name]
            matchers = {label: (op, value) for label, op, value in _MATCHER.findall(body)}
            assert set(matchers) <= labels, f"{title}: {name} has no label {set(matchers) - labels}"
            if "deployment" in labels:
                assert matchers.get("deployment") == ("=~", "$deployment"), f"{title}: {name}"
            if "client" in labels:
                assert matchers.get("client") == ("=~", "$client"), f"{title}: {name}"


def test_grouping_labels_exist_on_the_metrics(dashboard: dict[str, Any]) -> None:
    for title, expr in all_exprs(dashboard):
        available = {"le"}
        for name, _ in _SELECTOR.findall(expr):
            available |= CONTRACT_LABELS.get(family_of(name)) or PROMETHEUS_SERIES[name]
        for group in _BY.findall(expr):
            labels = {label.strip() for label in group.split(",") if label.strip()}
            assert labels <= available, f"{title}: groups by missing {labels - available}"


def test_rates_use_the_rate_interval(dashboard: dict[str, Any]) -> None:
    for title, expr in all_exprs(dashboard):
        for window in _RANGE.findall(expr):
            assert window == "$__rate_interval", f"{title}: window [{window}]"


def test_latency_quantiles_and_streaming_head_start(dashboard: dict[str, Any]) -> None:
    panels = query_panels(dashboard)

    def quantiles_of(histogram: str) -> set[str]:
        found = set()
        for panel in panels:
            for target in panel["targets"]:
                match = re.match(
                    rf"histogram_quantile\(([0-9.]+), .*\b{histogram}_bucket", target["expr"]
                )
                if match:
                    found.add(match.group(1))
        return found

    for histogram in (
        "aoai_proxy_time_to_first_byte_seconds",
        "aoai_proxy_time_to_first_token_seconds",
    ):
        assert {"0.5", "0.95", "0.99"} <= quantiles_of(histogram), histogram
    assert quantiles_of("aoai_proxy_time_per_output_token_seconds")
    assert quantiles_of("aoai_proxy_request_duration_seconds")
    assert any(
        p["type"] == "heatmap" and "output_tokens_per_second" in p["targets"][0]["expr"]
        for p in panels
    )
    # The head start: first token and full streamed response, per deployment, in one panel.
    head_start = [
        p
        for p in panels
        if any("time_to_first_token" in t["expr"] for t in p["targets"])
        and any(
            "request_duration" in t["expr"] and 'stream="true"' in t["expr"] for t in p["targets"]
        )
    ]
    assert head_start
    for panel in head_start:
        assert all("by (deployment, le)" in t["expr"] for t in panel["targets"])


def test_traffic_by_operation(dashboard: dict[str, Any]) -> None:
    by_operation = [
        (title, expr) for title, expr in all_exprs(dashboard)
        if "aoai_proxy_requests_total" in expr and "by (operation)" in expr
    ]
    assert by_operation
    # Every other query over requests sums the operation label away.
    for title, expr in all_exprs(dashboard):
        for group in _BY.findall(expr):
            assert "operation" not in group or (title, expr) in by_operation, title


def test_json_matches_its_generator() -> None:
    # The generator is a script, not a package module: load it from its file.
    spec = importlib.util.spec_from_file_location("generate_dashboard",
                                                  ROOT / "grafana" / "generate_dashboard.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.render() == DASHBOARD.read_text(encoding="utf-8"), (
        "the dashboard JSON is out of date: run grafana/generate_dashboard.py")
    assert generator.main(["--check"]) == 0  # what CI and contributors run


def test_routing_row_shows_where_requests_went(dashboard: dict[str, Any]) -> None:
    panels = dashboard["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Routing")
    end = next((i for i in range(start + 1, len(panels)) if panels[i]["type"] == "row"),
               len(panels))
    exprs = [t["expr"] for p in panels[start + 1:end] for t in p["targets"]]
    for metric, grouping in (("aoai_proxy_upstream_requests_total", "upstream, status_code"),
                             ("aoai_proxy_failovers_total", "upstream, reason"),
                             ("aoai_proxy_upstream_cooling_down", "deployment, upstream"),
                             ("aoai_proxy_spillovers_total", "deployment"),
                             ("aoai_proxy_upstream_time_to_first_token_seconds", "upstream, le")):
        assert any(metric in e and f"by ({grouping})" in e for e in exprs), metric
