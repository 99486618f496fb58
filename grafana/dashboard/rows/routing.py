"""The Routing row: where requests went, failovers, cooldowns, latency per upstream."""

from __future__ import annotations

from ..layout import Layout
from ..panels import quantile_targets, target, timeseries
from ..queries import rate, sel


def add(lay: Layout) -> None:
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
