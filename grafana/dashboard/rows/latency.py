"""The "Why stream" and Latency rows: first byte, first token, per token, duration, speed."""

from __future__ import annotations

from typing import Any

from ..layout import Layout
from ..panels import bargauge, dashed, heatmap, quantile_targets, target, timeseries
from ..queries import STREAMS, quantile, rate


def add(lay: Layout) -> None:
    why_stream(lay)
    latency(lay)


def why_stream(lay: Layout) -> None:
    ttft = "aoai_proxy_time_to_first_token_seconds"
    duration = "aoai_proxy_request_duration_seconds"
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


def latency(lay: Layout) -> None:
    ttft = "aoai_proxy_time_to_first_token_seconds"
    duration = "aoai_proxy_request_duration_seconds"
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
