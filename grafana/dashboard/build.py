"""Write grafana/dashboards/aoai-stream-proxy.json, the proxy's Grafana dashboard.

The JSON is generated so that every panel gets the same datasource, the same label filters and a
unit without anyone having to remember; edit this file, not the JSON, then run

    python grafana/generate_dashboard.py          # rewrite the JSON
    python grafana/generate_dashboard.py --check  # exit 1 if the JSON is stale (the tests run this)

Every query sits at panels[].targets[].expr (rows are expanded, so no panel is nested in a row):
tests and the end-to-end check can read them without knowing Grafana's layout rules.
"""

from __future__ import annotations

import json
from typing import Any

UID = "aoai-stream-proxy"
JOB = "aoai-stream-proxy"
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
STREAMS = 'stream="true"'

# Which metrics carry a client label (all aoai_proxy_* metrics carry deployment). Selectors get
# client=~"$client" exactly when the metric has the label; the tests hold this against the
# metrics contract.
_NO_CLIENT = {
    "aoai_proxy_retry_after_seconds",
    "aoai_proxy_upstream_errors_total",
    "aoai_proxy_in_flight_requests",
    "aoai_proxy_upstream_ratelimit_remaining",
    "aoai_proxy_stream_parse_errors_total",
    "aoai_proxy_upstream_requests_total",
    "aoai_proxy_failovers_total",
    "aoai_proxy_upstream_cooling_down",
    "aoai_proxy_spillovers_total",
    "aoai_proxy_cooling_down_rejections_total",
    "aoai_proxy_upstream_time_to_first_token_seconds",
    "aoai_proxy_upstream_request_duration_seconds",
}

Panel = dict[str, Any]
Target = dict[str, Any]


def sel(metric: str, *matchers: str) -> str:
    """`metric{deployment=~"$deployment", client=~"$client", *matchers}`."""
    family = metric.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
    labels = ['deployment=~"$deployment"']
    if family not in _NO_CLIENT:
        labels.append('client=~"$client"')
    labels.extend(matchers)
    return f"{metric}{{{', '.join(labels)}}}"


def rate(metric: str, *matchers: str, by: str = "deployment") -> str:
    """`sum by (by) (rate(selector[$__rate_interval]))`; `by=""` sums everything."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({sel(metric, *matchers)}[{RATE}]))"


def quantile(q: float, histogram: str, *matchers: str, by: str = "deployment") -> str:
    """The q-quantile of a histogram over the rate window, per `by` group."""
    grouping = f"{by}, le" if by else "le"
    bucket = sel(f"{histogram}_bucket", *matchers)
    return f"histogram_quantile({q}, sum by ({grouping}) (rate({bucket}[{RATE}])))"


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


class Layout:
    """Places panels left to right in a 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self._x = 0
        self._y = 0
        self._row_height = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self._next_id(),
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def add(self, panel: Panel, w: int, h: int = 8) -> None:
        if self._x + w > 24:
            self._newline()
        panel["id"] = self._next_id()
        panel["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        self.panels.append(panel)
        self._x += w
        self._row_height = max(self._row_height, h)

    def _newline(self) -> None:
        self._y += self._row_height
        self._x = 0
        self._row_height = 0


def dashed(regex: str) -> dict[str, Any]:
    """Field override: series whose name matches `regex` are drawn dashed."""
    return {
        "matcher": {"id": "byRegexp", "options": regex},
        "properties": [
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
        ],
    }


def panels() -> list[Panel]:
    lay = Layout()
    requests = "aoai_proxy_requests_total"
    ttft = "aoai_proxy_time_to_first_token_seconds"
    duration = "aoai_proxy_request_duration_seconds"

    lay.row("Overview")
    lay.add(
        stat(
            "Proxy up",
            "Whether Prometheus can scrape the proxy (the `up` series of its job).",
            f'min(up{{job="{JOB}"}})',
            "short",
            thresholds(("red", None), ("green", 1)),
            mappings=[
                {"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}}},
                {"type": "value", "options": {"1": {"text": "UP", "color": "green"}}},
                {
                    "type": "special",
                    "options": {"match": "null", "result": {"text": "NO TARGET", "color": "red"}},
                },
            ],
        ),
        w=4,
        h=4,
    )
    lay.add(
        stat(
            "Requests/s",
            "All requests through the proxy for the selected deployments and clients.",
            rate(requests, by=""),
            "reqps",
            thresholds(("blue", None)),
        ),
        w=4,
        h=4,
    )
    lay.add(
        stat(
            "Streaming share",
            "Share of requests with stream=true.",
            f"{rate(requests, STREAMS, by='')} / {rate(requests, by='')}",
            "percentunit",
            thresholds(("blue", None)),
        ),
        w=4,
        h=4,
    )
    lay.add(
        stat(
            "429 share",
            "Share of requests Azure OpenAI rate-limited. The alert fires above 10 % for 5 m.",
            f"{rate('aoai_proxy_rate_limited_total', by='')} / {rate(requests, by='')}",
            "percentunit",
            thresholds(("green", None), ("orange", 0.05), ("red", 0.1)),
        ),
        w=4,
        h=4,
    )
    lay.add(
        stat(
            "p95 time to first token",
            "95th percentile of the time until the first content token of a stream. "
            "The alert fires above 5 s for 10 m.",
            quantile(0.95, ttft, by=""),
            "s",
            thresholds(("green", None), ("orange", 2), ("red", 5)),
        ),
        w=4,
        h=4,
    )
    lay.add(
        stat(
            "Upstream errors/s",
            "Requests that got no complete answer from Azure OpenAI "
            "(connect, timeout, reset, protocol).",
            rate("aoai_proxy_upstream_errors_total", by=""),
            "reqps",
            thresholds(("green", None), ("red", 0.01)),
        ),
        w=4,
        h=4,
    )

    lay.row("Traffic")
    lay.add(
        timeseries(
            "Requests/s by deployment and status code",
            "Requests per second by deployment and HTTP status code returned to the client.",
            [
                target(
                    rate(requests, by="deployment, status_code"), "{{deployment}} {{status_code}}"
                )
            ],
            "reqps",
            stack=True,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Requests/s by operation",
            "Requests per second by API operation, from the path: chat_completions, "
            "responses (the Responses API), completions, embeddings, other.",
            [target(rate(requests, by="operation"), "{{operation}}")],
            "reqps",
            stack=True,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Streaming share by operation",
            "Share of each operation's requests with stream=true.",
            [
                target(
                    f"{rate(requests, STREAMS, by='operation')} / {rate(requests, by='operation')}",
                    "{{operation}}",
                )
            ],
            "percentunit",
            soft_max=1,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "In-flight requests",
            "Requests the proxy is serving right now, streams included.",
            [
                target(
                    f"sum by (deployment) ({sel('aoai_proxy_in_flight_requests')})",
                    "{{deployment}}",
                )
            ],
            "short",
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Share of streams",
            "Share of requests with stream=true, per deployment.",
            [
                target(
                    f"{rate(requests, STREAMS)} / {rate(requests)}",
                    "{{deployment}}",
                )
            ],
            "percentunit",
            soft_max=1,
        ),
        w=6,
    )

    lay.row("Why stream: first token vs. full response")

    def head_start() -> list[dict[str, Any]]:
        # A fresh list per panel: the bar gauge marks its targets instant in place.
        return [
            target(quantile(0.5, ttft), "{{deployment}} first token", "A"),
            target(quantile(0.5, duration, STREAMS), "{{deployment}} full response", "B"),
        ]
    lay.add(
        timeseries(
            "Median time to first token vs. full response (streams)",
            "Solid: when a streaming client sees its first token. Dashed: when the whole "
            "answer has arrived, i.e. what a non-streaming client waits for. "
            "The gap is the head start streaming gives.",
            head_start(),
            "s",
            overrides=[dashed(".*full response")],
        ),
        w=16,
    )
    lay.add(
        bargauge(
            "Head start per deployment (median, now)",
            "Median time to first token next to median full streamed response per deployment.",
            head_start(),
            "s",
        ),
        w=8,
    )

    lay.row("Latency")
    lay.add(
        timeseries(
            "Time to first byte (p50 / p95 / p99)",
            "From the request reaching the proxy to the first response byte from Azure OpenAI.",
            quantile_targets("aoai_proxy_time_to_first_byte_seconds"),
            "s",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Time to first token (p50 / p95 / p99)",
            "From the request reaching the proxy to the first content token of a stream.",
            quantile_targets(ttft),
            "s",
            threshold=5,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Time per output token (p50 / p95 / p99)",
            "Time between output tokens after the first one, per request.",
            quantile_targets("aoai_proxy_time_per_output_token_seconds"),
            "s",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Request duration (p50 / p95)",
            "From the request reaching the proxy to the last byte sent to the client.",
            quantile_targets(
                duration,
                qs=(0.5, 0.95),
                by="deployment, stream",
                legend="{{deployment}} stream={{stream}}",
            ),
            "s",
            overrides=[dashed(".*stream=false.*")],
        ),
        w=12,
    )
    lay.add(
        heatmap(
            "Output tokens/s per request",
            "Distribution of each request's output speed (completion tokens / generation time).",
            "aoai_proxy_output_tokens_per_second",
            "short",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Output tokens/s per request (p10 / p50 / p90)",
            "Per-request output speed; p10 is the slow tail users notice.",
            quantile_targets("aoai_proxy_output_tokens_per_second", qs=(0.1, 0.5, 0.9)),
            "short",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Output tokens/s overall",
            "Completion tokens per second across all requests, stacked: as reported in usage, "
            "plus estimated from streamed deltas for streams that carried no usage.",
            [
                target(
                    rate("aoai_proxy_tokens_total", 'token_type="completion"'),
                    "{{deployment}} reported",
                    "A",
                ),
                target(
                    rate("aoai_proxy_estimated_completion_tokens_total"),
                    "{{deployment}} estimated",
                    "B",
                ),
            ],
            "short",
            stack=True,
        ),
        w=8,
    )

    lay.row("Tokens")
    for token_type, note in (
        ("prompt", "Prompt (input) tokens per second."),
        ("completion", "Completion (output) tokens per second, reasoning tokens included."),
        ("cached", "Prompt tokens served from the prompt cache, per second."),
        ("reasoning", "Reasoning tokens per second (part of the completion tokens)."),
    ):
        lay.add(
            timeseries(
                f"{token_type.capitalize()} tokens/s",
                f"{note} By deployment and client, from usage.",
                [
                    target(
                        rate(
                            "aoai_proxy_tokens_total",
                            f'token_type="{token_type}"',
                            by="deployment, client",
                        ),
                        "{{deployment}} / {{client}}",
                    )
                ],
                "short",
                stack=True,
            ),
            w=6,
        )

    lay.row("Outcomes")
    lay.add(
        timeseries(
            "Finish reasons",
            "Finished choices per second by finish_reason; incomplete = the stream ended "
            "without one.",
            [
                target(
                    rate("aoai_proxy_finish_reasons_total", by="finish_reason"),
                    "{{finish_reason}}",
                )
            ],
            "cps",
            stack=True,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Content-filter events by stage and category",
            "Content-filter verdicts that filtered or flagged content, per second.",
            [
                target(
                    rate("aoai_proxy_content_filter_events_total", by="stage, category"),
                    "{{stage}} / {{category}}",
                )
            ],
            "cps",
            stack=True,
            bars=True,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "429s/s",
            "Requests Azure OpenAI answered with 429, by deployment and client.",
            [
                target(
                    rate("aoai_proxy_rate_limited_total", by="deployment, client"),
                    "{{deployment}} / {{client}}",
                )
            ],
            "reqps",
            stack=True,
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "429 share of requests",
            "Share of requests answered 429. Dashed line: the alert threshold (10 %).",
            [
                target(
                    f"{rate('aoai_proxy_rate_limited_total')} / {rate(requests)}",
                    "{{deployment}}",
                )
            ],
            "percentunit",
            threshold=0.1,
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Retry-after seen",
            "The wait Azure OpenAI asked for in 429 answers (retry-after-ms / retry-after).",
            [
                target(
                    quantile(0.95, "aoai_proxy_retry_after_seconds"),
                    "{{deployment}} p95",
                    "A",
                ),
                target(
                    f"{rate('aoai_proxy_retry_after_seconds_sum')}"
                    f" / {rate('aoai_proxy_retry_after_seconds_count')}",
                    "{{deployment}} mean",
                    "B",
                ),
            ],
            "s",
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Client disconnects",
            "Clients that went away before the response was complete, per second.",
            [
                target(
                    rate("aoai_proxy_client_disconnects_total", by="deployment, client"),
                    "{{deployment}} / {{client}}",
                )
            ],
            "cps",
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Upstream errors by type",
            "Requests that got no complete answer from Azure OpenAI, by error type.",
            [
                target(
                    rate("aoai_proxy_upstream_errors_total", by="deployment, error_type"),
                    "{{deployment}} {{error_type}}",
                )
            ],
            "reqps",
            stack=True,
        ),
        w=16,
    )
    lay.add(
        timeseries(
            "Stream parse errors",
            "Streams whose events the proxy could not parse (still forwarded unchanged).",
            [target(rate("aoai_proxy_stream_parse_errors_total"), "{{deployment}}")],
            "cps",
        ),
        w=8,
    )

    routing_row(lay)

    lay.row("Capacity")
    for resource, threshold in (("requests", None), ("tokens", 1000.0)):
        lay.add(
            timeseries(
                f"Rate-limit remaining: {resource}",
                f"x-ratelimit-remaining-{resource} as last reported by Azure OpenAI."
                + (" Dashed line: the alert threshold." if threshold else ""),
                [
                    target(
                        "min by (deployment) ("
                        + sel("aoai_proxy_upstream_ratelimit_remaining", f'resource="{resource}"')
                        + ")",
                        "{{deployment}}",
                    )
                ],
                "short",
                threshold=threshold,
            ),
            w=12,
        )
    return lay.panels


def routing_row(lay: Layout) -> None:
    """Where requests went: attempts per upstream, failovers, cooldowns, latency per upstream."""
    failovers = "aoai_proxy_failovers_total"
    lay.row("Routing")
    lay.add(
        timeseries(
            "Upstream attempts/s by upstream and status",
            "Every request sent upstream, failed-over attempts included, by the upstream's "
            "status (or connect / timeout / reset / protocol when it gave none). attempts = "
            "requests - the proxy's own 429s + failovers.",
            [
                target(
                    rate("aoai_proxy_upstream_requests_total", by="upstream, status_code"),
                    "{{upstream}} {{status_code}}",
                )
            ],
            "reqps",
            stack=True,
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Failovers/s by reason, and the proxy's own 429s",
            "Attempts given up on for another upstream before any byte reached the client, "
            "by the upstream given up on and why (429, 5xx, 4xx, connect, timeout); and "
            "requests the proxy answered 429 itself because every upstream was cooling down.",
            [
                target(rate(failovers, by="upstream, reason"), "{{upstream}} {{reason}}", "A"),
                target(
                    rate("aoai_proxy_cooling_down_rejections_total"),
                    "{{deployment}} own 429 (all cooling)",
                    "B",
                ),
            ],
            "reqps",
            stack=True,
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Failover share of requests",
            "Failovers per request: capacity running short before clients feel it. "
            "Dashed line: the alert threshold (20 %).",
            [target(f"{rate(failovers)} / {rate('aoai_proxy_requests_total')}",
                    "{{deployment}}")],
            "percentunit",
            threshold=0.2,
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Cooling-down upstreams",
            "1 while a (deployment, upstream) pair rests after a 429 or failure and gets no "
            "requests. Every candidate of a deployment at 1: the proxy answers 429 itself. "
            "Per proxy process (cooldowns are not shared).",
            [
                target(
                    "max by (deployment, upstream) ("
                    + sel("aoai_proxy_upstream_cooling_down")
                    + ")",
                    "{{deployment}} {{upstream}}",
                )
            ],
            "short",
            soft_max=1,
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Time to first token per upstream (p50 / p95)",
            "Streams: from sending the attempt that served the client to its first token, "
            "per upstream (failover time before it is not included; it shows in the "
            "client-side time to first token).",
            quantile_targets(
                "aoai_proxy_upstream_time_to_first_token_seconds",
                qs=(0.5, 0.95),
                by="upstream",
                legend="{{upstream}}",
            ),
            "s",
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Duration per upstream (p50 / p95)",
            "From sending the attempt that served the client to the last byte sent, per "
            "upstream.",
            quantile_targets(
                "aoai_proxy_upstream_request_duration_seconds",
                qs=(0.5, 0.95),
                by="upstream",
                legend="{{upstream}}",
            ),
            "s",
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "PTU spillovers/s",
            "Responses Azure served from a provisioned deployment's spillover deployment "
            "(x-ms-spillover-from-*), per deployment.",
            [target(rate("aoai_proxy_spillovers_total"), "{{deployment}}")],
            "reqps",
        ),
        w=6,
    )


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
