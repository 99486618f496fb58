"""Panel and target builders: every panel gets the same datasource, legend and unit conventions."""

from __future__ import annotations

from typing import Any

from .queries import RATE, quantile, sel

DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}

Panel = dict[str, Any]
Target = dict[str, Any]


def target(expr: str, legend: str, ref: str = "A", **extra: Any) -> Target:
    return {"datasource": DATASOURCE, "refId": ref, "expr": expr, "legendFormat": legend, **extra}


def quantile_targets(
    histogram: str,
    *matchers: str,
    qs: tuple[float, ...] = (0.5, 0.95, 0.99),
    by: str = "deployment",
    legend: str = "{{deployment}}",
) -> list[Target]:
    """One target per quantile in `qs`, legend `<legend> p95`."""
    return [
        target(quantile(q, histogram, *matchers, by=by), f"{legend} p{round(q * 100)}", ref)
        for ref, q in zip("ABCDEFGH", qs)
    ]


def thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def timeseries(
    title: str,
    description: str,
    targets: list[Target],
    unit: str,
    *,
    stack: bool = False,
    bars: bool = False,
    threshold: float | None = None,
    soft_max: float | None = None,
    overrides: list[dict[str, Any]] | None = None,
) -> Panel:
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else (30 if stack else 10),
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "axisSoftMin": 0,
    }
    if soft_max is not None:
        custom["axisSoftMax"] = soft_max
    defaults: dict[str, Any] = {"unit": unit, "custom": custom}
    if threshold is not None:
        # Draw the alert threshold as a dashed line so the panel shows how close we are.
        custom["thresholdsStyle"] = {"mode": "dashed"}
        defaults["thresholds"] = thresholds(("green", None), ("red", threshold))
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    description: str,
    expr: str,
    unit: str,
    steps: dict[str, Any],
    *,
    mappings: list[dict[str, Any]] | None = None,
) -> Panel:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, title)],
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": steps, "mappings": mappings or []},
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "value",
            "justifyMode": "center",
            "orientation": "auto",
        },
    }


def heatmap(title: str, description: str, histogram: str, unit: str) -> Panel:
    bucket = sel(f"{histogram}_bucket")
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [
            target(
                f"sum by (le) (rate({bucket}[{RATE}]))",
                "{{le}}",
                format="heatmap",
            )
        ],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5},
            "yAxis": {"axisPlacement": "left", "unit": unit},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "yHistogram": True},
            "legend": {"show": True},
        },
    }


def bargauge(title: str, description: str, targets: list[Target], unit: str) -> Panel:
    for t in targets:
        t["instant"] = True
        t["range"] = False
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "thresholds": thresholds(("blue", None)),
                "color": {"mode": "palette-classic"},
            },
            "overrides": [],
        },
        "options": {
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def dashed(regex: str) -> dict[str, Any]:
    """Field override: series whose name matches `regex` are drawn dashed."""
    return {
        "matcher": {"id": "byRegexp", "options": regex},
        "properties": [
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
        ],
    }
