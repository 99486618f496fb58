"""The Overview row: one stat each for health, load, streaming, 429s, latency, errors."""

from __future__ import annotations

from ..layout import Layout
from ..panels import stat, thresholds
from ..queries import JOB, STREAMS, quantile, rate


def add(lay: Layout) -> None:
    requests = "aoai_proxy_requests_total"
    ttft = "aoai_proxy_time_to_first_token_seconds"

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
