"""The PrometheusRule and the dashboard ConfigMap are generated from prometheus/alerts.yml and
the dashboard JSON, equal them, and the rules pass promtool.

After changing alerts.yml or the dashboard: `python3 deploy/kubernetes/generate_monitoring.py`.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.deploy.k8s import DEPLOY, NAME, ROOT, Obj, one

GENERATOR = DEPLOY / "generate_monitoring.py"
ALERTS = ROOT / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "aoai-stream-proxy.json"
RULE_FILE = DEPLOY / "components" / "prometheus-operator" / "prometheusrule.yaml"
DASHBOARD_FILE = DEPLOY / "components" / "grafana" / "dashboard-configmap.yaml"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_monitoring", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_prometheus_rule_carries_exactly_the_groups_of_alerts_yml() -> None:
    rule = load(RULE_FILE)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"] == {"groups": load(ALERTS)["groups"]}


def test_dashboard_configmap_carries_the_dashboard_json_unchanged() -> None:
    configmap = load(DASHBOARD_FILE)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {DASHBOARD.name: DASHBOARD.read_text(encoding="utf-8")}


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_check_fails_when_a_source_changes(source: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    module = generator()
    original = ALERTS if source == "alerts" else DASHBOARD
    changed = tmp_path / original.name
    text = original.read_text(encoding="utf-8")
    if source == "alerts":
        changed.write_text(text.replace("for: 5m", "for: 6m", 1), encoding="utf-8")
    else:
        changed.write_text(text.replace('"Azure OpenAI stream proxy"', '"renamed"', 1),
                           encoding="utf-8")
    assert changed.read_text(encoding="utf-8") != text
    monkeypatch.setattr(module, "ALERTS" if source == "alerts" else "DASHBOARD", changed)
    assert module.main(["--check"]) == 1


def test_the_overlay_ships_the_generated_objects(renderings: dict[Path, list[Obj]]) -> None:
    objects = renderings[DEPLOY / "overlays" / "monitoring"]
    assert one(objects, "PrometheusRule", NAME)["spec"] == load(RULE_FILE)["spec"]
    assert one(objects, "ConfigMap", f"{NAME}-dashboard")["data"] == load(DASHBOARD_FILE)["data"]


@pytest.mark.e2e
def test_promtool_accepts_the_prometheus_rule_groups(promtool: str, tmp_path: Path) -> None:
    rules = tmp_path / "prometheusrule-groups.yml"
    rules.write_text(yaml.safe_dump({"groups": load(RULE_FILE)["spec"]["groups"]}),
                     encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
