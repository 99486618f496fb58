"""Write the Kubernetes monitoring objects from their one source of truth.

- components/prometheus-operator/prometheusrule.yaml: a PrometheusRule whose `spec.groups` are
  the groups of prometheus/alerts.yml, unchanged;
- components/grafana/dashboard-configmap.yaml: a ConfigMap labelled `grafana_dashboard: "1"`
  (what the Grafana sidecar watches) carrying grafana/dashboards/aoai-stream-proxy.json byte
  for byte.

Edit the sources, never the outputs, then run

    python3 deploy/kubernetes/generate_monitoring.py          # rewrite both files
    python3 deploy/kubernetes/generate_monitoring.py --check  # exit 1 if one is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ALERTS = ROOT / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "aoai-stream-proxy.json"
RULE_OUT = HERE / "components" / "prometheus-operator" / "prometheusrule.yaml"
DASHBOARD_OUT = HERE / "components" / "grafana" / "dashboard-configmap.yaml"
NAME = "aoai-stream-proxy"
LABELS = {"app.kubernetes.io/name": NAME}
HEADER = ("# Generated from {source} by `python3 deploy/kubernetes/generate_monitoring.py`:\n"
          "# change the source and run it again; never edit this file.\n")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so the generated files read like their sources."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _shown(path: Path) -> str:
    """`path` relative to the repository, as the README and the headers name files."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _dump(source: Path, document: dict[str, Any]) -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)
    return HEADER.format(source=_shown(source)) + body


def prometheus_rule() -> str:
    alerts = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return _dump(ALERTS, {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": NAME, "labels": dict(LABELS)},
        "spec": {"groups": alerts["groups"]},
    })


def dashboard_configmap() -> str:
    return _dump(DASHBOARD, {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{NAME}-dashboard",
                     "labels": {**LABELS, "grafana_dashboard": "1"}},
        "data": {DASHBOARD.name: DASHBOARD.read_text(encoding="utf-8")},
    })


def outputs() -> dict[Path, str]:
    return {RULE_OUT: prometheus_rule(), DASHBOARD_OUT: dashboard_configmap()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if an output is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {_shown(path)}")
    for path in stale:
        print(f"{_shown(path)} is out of date: run python3 {_shown(Path(__file__).resolve())}",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
