"""The Outcomes row: finish reasons and content filtering, 429s, disconnects and errors."""

from __future__ import annotations

from ..layout import Layout
from ..panels import target, timeseries
from ..queries import quantile, rate


def add(lay: Layout) -> None:
    lay.row("Outcomes")
    answers(lay)
    rate_limits(lay)
    failures(lay)


def answers(lay: Layout) -> None:
    """How answers ended: finish reasons, content-filter verdicts."""
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


def rate_limits(lay: Layout) -> None:
    """What Azure OpenAI's 429s cost: how many, what share, how long it asked to wait."""
    requests = "aoai_proxy_requests_total"
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


def failures(lay: Layout) -> None:
    """Requests that ended badly: clients gone, upstream errors, unparsable streams."""
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
