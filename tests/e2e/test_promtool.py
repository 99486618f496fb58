"""The Prometheus config, the alert rules and their unit tests, checked by the real promtool.

Needs `promtool` (Debian: `apt-get install prometheus`). Without it these tests fail when the
CI environment variable is set and are skipped otherwise.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from proxy.telemetry.metrics import Metrics
from tests.conftest import require_binary

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "aoai-stream-proxy.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool", "Debian: apt-get install prometheus")


def run(promtool: str, *args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def test_rules_are_valid(promtool: str) -> None:
    output = run(promtool, "check", "rules", str(ALERTS))
    assert "SUCCESS" in output


def test_config_is_valid_and_loads_the_rules(promtool: str) -> None:
    # promtool resolves rule_files relative to the config file, as Prometheus does.
    output = run(promtool, "check", "config", str(CONFIG))
    assert "SUCCESS: 1 rule files found" in output
    config = load(CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "aoai-stream-proxy"
    assert job["scrape_interval"] == "5s"
    assert job["static_configs"] == [{"targets": ["proxy:8080"]}]


def test_rule_unit_tests_pass(promtool: str) -> None:
    output = run(promtool, "test", "rules", ALERTS_TEST.name, cwd=PROMETHEUS)
    assert "SUCCESS" in output


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases: dict[str, dict[str, int]] = {}
    for test in load(ALERTS_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            outcome = "fires" if case.get("exp_alerts") else "quiet"
            counts = cases.setdefault(case["alertname"], {"fires": 0, "quiet": 0})
            counts[outcome] += 1
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for name in names:
        assert cases.get(name, {}).get("fires"), f"{name}: no test case where it fires"
        assert cases.get(name, {}).get("quiet"), f"{name}: no test case where it stays quiet"
    assert set(cases) <= set(names), f"tests for unknown alerts: {set(cases) - set(names)}"


def test_alerts_are_labelled_and_explained() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        if "aoai_proxy_" in rule["expr"]:
            # Per-deployment rules must say which deployment.
            assert re.search(r"by \(deployment(, le)?\)", rule["expr"]), name
            for key in ("summary", "description"):
                assert "{{ $labels.deployment }}" in annotations[key], f"{name}: {key}"
        else:
            # Rules about the proxy process itself (up / absent): no deployment label exists.
            assert "up{" in rule["expr"], name


def test_alerts_only_use_exported_metrics() -> None:
    registry = CollectorRegistry()
    Metrics(registry, ["gpt-4o"], ["app"])
    exported = set()
    for family in registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
        }.get(family.type, ("",))
        exported |= {family.name + suffix for suffix in suffixes}
    for rule in alert_rules():
        for name in re.findall(r"\baoai_proxy_[a-z0-9_]+\b", rule["expr"]):
            assert name in exported, f"{rule['alert']}: {name} is not exported"


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """Every dashboard query, with the template variables filled in, is valid PromQL."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rules = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                expr = (
                    target["expr"]
                    .replace("$__rate_interval", "1m")
                    .replace("$deployment", ".*")
                    .replace("$client", ".*")
                )
                rules.append(
                    {"record": f"dashboard:panel_{panel['id']}:{target['refId']}", "expr": expr}
                )

    walk(dashboard["panels"])
    assert rules
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run(promtool, "check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in output
