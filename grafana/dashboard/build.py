"""The whole dashboard: variables, annotations and the rows in order, rendered as JSON text.

Every query sits at panels[].targets[].expr (rows are expanded, so no panel is nested in a row):
tests and the end-to-end check can read them without knowing Grafana's layout rules.
"""

from __future__ import annotations

import json
from typing import Any

from .layout import Layout
from .panels import DATASOURCE, Panel
from .rows import capacity, latency, outcomes, overview, routing, tokens, traffic

UID = "aoai-stream-proxy"


def panels() -> list[Panel]:
    lay = Layout()
    for group in (overview, traffic, latency, tokens, outcomes, routing, capacity):
        group.add(lay)
    return lay.panels


def variables() -> list[dict[str, Any]]:
    def label_variable(name: str, label: str, definition: str) -> dict[str, Any]:
        return {
            "type": "query",
            "name": name,
            "label": label,
            "datasource": DATASOURCE,
            "definition": definition,
            "query": {"query": definition, "refId": f"{name}-values"},
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            # ".*" instead of the list of values: label values that appear later still match.
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "regex": "",
            "sort": 1,
            "hide": 0,
        }

    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            # The uid provisioned by grafana/provisioning/datasources/prometheus.yml.
            "current": {"selected": False, "text": "Prometheus", "value": "prometheus"},
            "options": [],
            "refresh": 1,
            "regex": "",
            "hide": 0,
        },
        label_variable(
            "deployment", "Deployment", "label_values(aoai_proxy_requests_total, deployment)"
        ),
        label_variable(
            "client",
            "Client",
            'label_values(aoai_proxy_requests_total{deployment=~"$deployment"}, client)',
        ),
    ]


def dashboard() -> dict[str, Any]:
    return {
        "id": None,
        "uid": UID,
        "title": "Azure OpenAI stream proxy",
        "description": "Traffic, streaming latency, tokens, outcomes and quota of aoai-stream-proxy.",
        "tags": ["aoai-stream-proxy", "azure-openai"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": variables()},
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"
