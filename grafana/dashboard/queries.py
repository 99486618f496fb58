"""PromQL for the dashboard: every selector gets the dashboard's label filters the same way."""

from __future__ import annotations

JOB = "aoai-stream-proxy"
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
