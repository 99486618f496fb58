"""Every metric the proxy exports, with its help text and buckets, and `record(exchange)`.

This is the one place metric names live; the Grafana dashboard and the alert rules depend on
them, so names, types and labels are a contract (see the README). Every label value comes from
a closed set: deployments and clients from the configuration (`other` / `unknown` otherwise),
status codes as three digits, reasons and categories from fixed lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy.observe.semantics import Observation, content_filter_events
from proxy.relay.exchange import Exchange
from proxy.relay.operation import OPERATIONS
from proxy.vocabulary import (
    ERROR_TYPES,
    INCOMPLETE,
    OTHER,
    OTHER_DEPLOYMENT,
    UNKNOWN_CLIENT,
    incomplete_finishes,
)

FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "function_call")
FAILOVER_REASONS = ("429", "5xx", "4xx", "connect", "timeout")
_KNOWN_REASONS = frozenset({*FINISH_REASONS, INCOMPLETE})
TOKEN_TYPES = ("prompt", "completion", "cached", "reasoning")

# Time to first byte: for streams Azure sends the prompt-annotation chunk right after the prompt
# filter runs (tens to hundreds of ms); for non-streams the first byte is the whole answer, which
# can take minutes. Fine steps below 1 s, then a tail to 10 minutes.
TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0,
                60.0, 120.0, 300.0, 600.0)
# Time to first token: users notice differences of tens of ms under 2 s, so resolution there;
# Azure's default filter releases text in blocks and reasoning models think for a minute or
# more, so a tail to 120 s.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0,
                3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# Whole requests: from a short embedding call to a long generation (openai's default client
# timeout is 600 s).
DURATION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
                    300.0, 600.0)
# Time per output token: today's models stream 10-100 ms per token; a block-releasing filter
# can make it look like 1 ms, a congested deployment 0.5 s.
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1,
                0.15, 0.2, 0.3, 0.5, 1.0)
# Output tokens per second per request: the reciprocal view of the same range.
TPS_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0, 150.0, 200.0,
               300.0, 500.0, 1000.0)
# Retry-after: Azure asks for seconds to a minute; retry-after-ms allows sub-second values.
RETRY_AFTER_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0,
                       300.0)


M = TypeVar("M", Counter, Gauge, Histogram)


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


class Metrics:
    """The proxy's metrics, registered in `registry` (tests give each app a fresh one)."""

    def __init__(self, registry: CollectorRegistry, deployments: Sequence[str],
                 clients: Sequence[str], routes: Sequence[tuple[str, str]] = ()) -> None:
        """`routes`: the configured (deployment, upstream) pairs of the routing table."""
        dc = ("deployment", "client")
        p = "aoai_proxy_"
        self.requests = Counter(
            p + "requests", "Requests handled, counted once each when it ends; operation from "
            "the path (chat_completions, responses, completions, embeddings, other).",
            (*dc, "operation", "stream", "status_code"), registry=registry)
        self.duration = Histogram(
            p + "request_duration_seconds",
            "From the request's arrival to the last response byte sent to the client.",
            (*dc, "stream"), buckets=DURATION_BUCKETS, registry=registry)
        self.ttfb = Histogram(
            p + "time_to_first_byte_seconds",
            "From the request's arrival to the first response body byte sent to the client.",
            (*dc, "stream"), buckets=TTFB_BUCKETS, registry=registry)
        self.ttft = Histogram(
            p + "time_to_first_token_seconds",
            "Streams: from the request's arrival to the first chunk with content or a tool-call "
            "delta sent to the client.", dc, buckets=TTFT_BUCKETS, registry=registry)
        self.tpot = Histogram(
            p + "time_per_output_token_seconds",
            "Streams: (last token time - first token time) / (output tokens - 1).",
            dc, buckets=TPOT_BUCKETS, registry=registry)
        self.tps = Histogram(
            p + "output_tokens_per_second",
            "Streams: output tokens / (last token time - first token time), per request.",
            dc, buckets=TPS_BUCKETS, registry=registry)
        self.tokens = Counter(
            p + "tokens", "Tokens as reported by the upstream's usage (cached is part of prompt, "
            "reasoning part of completion).", (*dc, "token_type"), registry=registry)
        self.estimated = Counter(
            p + "estimated_completion_tokens",
            "Streams without upstream usage: content-bearing chunks counted as tokens.",
            dc, registry=registry)
        self.finish_reasons = Counter(
            p + "finish_reasons", "Finish reasons, one per choice; `incomplete` when a stream "
            "ended without one.", (*dc, "finish_reason"), registry=registry)
        self.content_filter = Counter(
            p + "content_filter_events",
            "Prompts blocked (400 content_filter) and completions ended by the content filter, "
            "by filtered category.", (*dc, "stage", "category"), registry=registry)
        self.rate_limited = Counter(
            p + "rate_limited", "Upstream 429 responses.", dc, registry=registry)
        self.retry_after = Histogram(
            p + "retry_after_seconds", "Wait asked for by upstream 429s (retry-after-ms or "
            "retry-after).", ("deployment",), buckets=RETRY_AFTER_BUCKETS, registry=registry)
        self.upstream_errors = Counter(
            p + "upstream_errors", "Failures talking to the upstream, mid-stream resets "
            "included.", ("deployment", "error_type"), registry=registry)
        self.client_disconnects = Counter(
            p + "client_disconnects", "Clients gone before their response ended.",
            dc, registry=registry)
        self.in_flight = Gauge(
            p + "in_flight_requests", "Requests being served now.", ("deployment",),
            multiprocess_mode="livesum", registry=registry)
        self.ratelimit_remaining = Gauge(
            p + "upstream_ratelimit_remaining", "Last x-ratelimit-remaining-{requests,tokens} "
            "header seen from the upstream.", ("deployment", "resource"),
            multiprocess_mode="mostrecent", registry=registry)
        self.parse_errors = Counter(
            p + "stream_parse_errors", "Response events or bodies the observer could not "
            "parse (they were still forwarded).", ("deployment",), registry=registry)
        self._routing_metrics(registry, deployments, routes)
        # `labels()` costs microseconds (argument checks, a lock); label values are bounded,
        # so each bound child is looked up once and then taken from this dict.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._initialise(deployments, clients)

    def _child(self, metric: M, *values: str) -> M:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _initialise(self, deployments: Sequence[str], clients: Sequence[str]) -> None:
        """Create the label sets dashboards and alerts divide by, so they show 0, not nothing."""
        for d in (*deployments, OTHER_DEPLOYMENT):
            self.in_flight.labels(d).set(0)
            for c in (*clients, UNKNOWN_CLIENT):
                # Traffic by operation shows every operation from the start (0, not nothing).
                for operation in OPERATIONS:
                    self.requests.labels(d, c, operation, "true", "200")
                    self.requests.labels(d, c, operation, "false", "200")
            self.parse_errors.labels(d)
            for error_type in ERROR_TYPES:
                self.upstream_errors.labels(d, error_type)
            for c in (*clients, UNKNOWN_CLIENT):
                self.rate_limited.labels(d, c)
                self.client_disconnects.labels(d, c)
                self.estimated.labels(d, c)
                for token_type in TOKEN_TYPES:
                    self.tokens.labels(d, c, token_type)
                for reason in (*FINISH_REASONS, INCOMPLETE):
                    self.finish_reasons.labels(d, c, reason)

    def started(self, ex: Exchange) -> None:
        """Count `ex` as in flight under its deployment (known once the body was read)."""
        self._child(self.in_flight, ex.deployment).inc()
        ex.in_flight = True

    def record(self, ex: Exchange) -> None:
        """Account for one finished request; call exactly once per request."""
        d, c = ex.deployment, ex.client
        stream = "true" if ex.stream else "false"
        if ex.in_flight:
            self._child(self.in_flight, d).dec()
        self._child(self.requests, d, c, ex.operation, stream, status_label(ex.status)).inc()
        if ex.ended_at is not None:
            self._child(self.duration, d, c, stream).observe(ex.ended_at - ex.started)
        if ex.first_byte_at is not None:
            self._child(self.ttfb, d, c, stream).observe(ex.first_byte_at - ex.started)
        if ex.status == 429:
            self._child(self.rate_limited, d, c).inc()
            if ex.retry_after is not None:
                self._child(self.retry_after, d).observe(ex.retry_after)
        if ex.error_type is not None:
            self._child(self.upstream_errors, d, ex.error_type).inc()
        if ex.client_disconnected:
            self._child(self.client_disconnects, d, c).inc()
        for resource, value in ex.ratelimit_remaining.items():
            self._child(self.ratelimit_remaining, d, resource).set(value)
        if ex.observation is not None:
            self._record_observation(ex, ex.observation)
        self._record_routing(ex)

    def _record_observation(self, ex: Exchange, obs: Observation) -> None:
        d, c = ex.deployment, ex.client
        if obs.parse_errors:
            self._child(self.parse_errors, d).inc(obs.parse_errors)
        usage = obs.usage
        if usage is not None:
            for token_type, count in (("prompt", usage.prompt_tokens),
                                      ("completion", usage.completion_tokens),
                                      ("cached", usage.cached_tokens),
                                      ("reasoning", usage.reasoning_tokens)):
                if count:
                    self._child(self.tokens, d, c, token_type).inc(count)
        elif ex.stream and ex.status == 200:
            self._child(self.estimated, d, c).inc(obs.output_deltas)
        for reason in self.finish_reason_labels(ex, obs):
            self._child(self.finish_reasons, d, c, reason).inc()
        for stage, category in content_filter_events(obs):
            self._child(self.content_filter, d, c, stage, category).inc()
        if ex.stream:
            self._record_token_timing(ex, obs)

    @staticmethod
    def finish_reason_labels(ex: Exchange, obs: Observation) -> list[str]:
        # `incomplete` may also come from the observer: a Responses response that failed.
        reasons = [r if r in _KNOWN_REASONS else OTHER for r in obs.finish_reasons.values()]
        if ex.stream and ex.status == 200:
            reasons += [INCOMPLETE] * incomplete_finishes(len(obs.incomplete_choices),
                                                          len(obs.finish_reasons))
        return reasons

    def _record_token_timing(self, ex: Exchange, obs: Observation) -> None:
        d, c = ex.deployment, ex.client
        first, last = obs.first_token_at, obs.last_token_at
        if first is None or last is None:
            return
        self._child(self.ttft, d, c).observe(first - ex.started)
        # Reasoning tokens are produced before the first visible token, so only the visible
        # ones are spread over the first..last window.
        usage = obs.usage
        tokens = (usage.completion_tokens - usage.reasoning_tokens) if usage else obs.output_deltas
        if tokens <= 1:
            return
        # Tokens that arrived together (one read, or a filter releasing a block) took no time
        # each: time per token is 0, tokens per second undefined and so not observed.
        window = max(last - first, 0.0)
        self._child(self.tpot, d, c).observe(window / (tokens - 1))
        if window > 0:
            self._child(self.tps, d, c).observe(tokens / window)

    # ------------------------------------------------------------------------------- routing

    def _routing_metrics(self, registry: CollectorRegistry, deployments: Sequence[str],
                         routes: Sequence[tuple[str, str]]) -> None:
        p = "aoai_proxy_"
        du = ("deployment", "upstream")
        self.upstream_requests = Counter(
            p + "upstream_requests", "Upstream attempts, one per request sent upstream "
            "(failed-over ones included); status_code is the upstream's, or the error type "
            "when it gave no answer.", (*du, "status_code"), registry=registry)
        self.failovers = Counter(
            p + "failovers", "Attempts given up on for another upstream before any byte "
            "reached the client, by the upstream given up on and why.", (*du, "reason"),
            registry=registry)
        self.cooling_rejections = Counter(
            p + "cooling_down_rejections", "Requests the proxy answered 429 itself because "
            "every upstream of the deployment was cooling down (no upstream was asked).",
            ("deployment",), registry=registry)
        self.spillovers = Counter(
            p + "spillovers", "Responses Azure served from a PTU deployment's spillover "
            "deployment (x-ms-spillover-from-*).", ("deployment",), registry=registry)
        # Per upstream without the client and stream labels: (deployment, upstream) pairs
        # times buckets stays small where adding `upstream` to the per-client histograms
        # would multiply their series (see the README).
        self.upstream_ttft = Histogram(
            p + "upstream_time_to_first_token_seconds", "Streams: from sending the attempt "
            "that served the client to its first token, per upstream.", du,
            buckets=TTFT_BUCKETS, registry=registry)
        self.upstream_duration = Histogram(
            p + "upstream_request_duration_seconds", "From sending the attempt that served "
            "the client to the last byte sent, per upstream.", du,
            buckets=DURATION_BUCKETS, registry=registry)
        self.cooling = CoolingDown()
        registry.register(self.cooling)
        for d, u in routes:
            for reason in FAILOVER_REASONS:
                self.failovers.labels(d, u, reason)
        for d in (*deployments, OTHER_DEPLOYMENT):
            self.spillovers.labels(d)
        for d in dict.fromkeys(d for d, _ in routes):
            self.cooling_rejections.labels(d)

    def _record_routing(self, ex: Exchange) -> None:
        d = ex.deployment
        for upstream, outcome in ex.attempts:
            label = status_label(int(outcome)) if outcome.isdigit() else (
                outcome if outcome in ERROR_TYPES else "other")
            self._child(self.upstream_requests, d, upstream, label).inc()
        for upstream, reason in ex.failovers:
            self._child(self.failovers, d, upstream, reason).inc()
        if ex.spillover:
            self._child(self.spillovers, d).inc()
        if ex.cooling_wait is not None:
            self._child(self.cooling_rejections, d).inc()
        if ex.upstream is None or ex.attempt_started is None:
            return
        if ex.ended_at is not None:
            self._child(self.upstream_duration, d, ex.upstream).observe(
                ex.ended_at - ex.attempt_started)
        obs = ex.observation
        if ex.stream and obs is not None and obs.first_token_at is not None:
            self._child(self.upstream_ttft, d, ex.upstream).observe(
                obs.first_token_at - ex.attempt_started)


CoolingSource = Callable[[], Iterable[tuple[str, str, bool]]]


class CoolingDown(Collector):
    """`aoai_proxy_upstream_cooling_down`, read from the router at scrape time (a cooldown
    ends by the clock, not by an event that could update a gauge)."""

    def __init__(self) -> None:
        self.source: CoolingSource = lambda: ()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "aoai_proxy_upstream_cooling_down", "1 while a (deployment, upstream) pair is "
            "cooling down after a failure and gets no requests, else 0 (this process's view).",
            labels=("deployment", "upstream"))
        for deployment, upstream, cooling in self.source():
            family.add_metric((deployment, upstream), 1.0 if cooling else 0.0)
        yield family
