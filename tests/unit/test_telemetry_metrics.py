"""Metrics.record: what one finished exchange adds to the metrics (no sockets)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from proxy.observe.semantics import Observation, Usage
from proxy.relay.exchange import Exchange
from proxy.relay.operation import OPERATIONS, Operation
from proxy.telemetry.metrics import Metrics

DC = {"deployment": "gpt-4o", "client": "unknown"}


def record(obs: Observation | None, *, stream: bool = True, status: int = 200,
           operation: Operation = "chat_completions") -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = Metrics(registry, ["gpt-4o"], [])
    ex = Exchange(started=10.0, wall_time=0.0, method="POST", path="/", operation=operation,
                  deployment="gpt-4o", stream=stream, status=status, first_byte_at=10.5,
                  ended_at=12.0, observation=obs)
    metrics.record(ex)
    return registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {**DC, **labels}) or 0.0


def streamed(first: float, last: float, tokens: int) -> Observation:
    return Observation(first_token_at=first, last_token_at=last, output_deltas=tokens,
                       finish_reasons={0: "stop"}, choices_seen={0},
                       usage=Usage(prompt_tokens=3, completion_tokens=tokens))


def test_tokens_arriving_together_take_zero_time_each() -> None:
    # All output in one read: first and last token at the same instant.
    registry = record(streamed(11.0, 11.0, 25))
    tpot = "aoai_proxy_time_per_output_token_seconds"
    assert value(registry, f"{tpot}_count") == 1
    assert value(registry, f"{tpot}_sum") == 0
    assert value(registry, "aoai_proxy_output_tokens_per_second_count") == 0
    assert value(registry, "aoai_proxy_time_to_first_token_seconds_count") == 1


def test_tokens_spread_over_time() -> None:
    registry = record(streamed(11.0, 13.0, 5))
    assert value(registry, "aoai_proxy_time_per_output_token_seconds_sum") == 0.5
    assert value(registry, "aoai_proxy_output_tokens_per_second_sum") == 2.5


def test_one_output_token_has_no_time_per_token() -> None:
    registry = record(streamed(11.0, 11.0, 1))
    assert value(registry, "aoai_proxy_time_per_output_token_seconds_count") == 0
    assert value(registry, "aoai_proxy_time_to_first_token_seconds_count") == 1


def test_only_visible_tokens_are_spread_over_the_window() -> None:
    obs = streamed(11.0, 12.0, 0)
    obs.usage = Usage(prompt_tokens=3, completion_tokens=45, reasoning_tokens=40)
    registry = record(obs)
    assert value(registry, "aoai_proxy_time_per_output_token_seconds_sum") == 0.25


def test_requests_by_operation_with_every_operation_present_from_the_start() -> None:
    registry = record(None, stream=False, status=200, operation="responses")
    requests = "aoai_proxy_requests_total"
    assert value(registry, requests, operation="responses", stream="false",
                 status_code="200") == 1
    for operation in OPERATIONS:
        for stream in ("true", "false"):
            sample = registry.get_sample_value(
                requests, {**DC, "operation": operation, "stream": stream, "status_code": "200"})
            assert sample is not None, (operation, stream)


def test_a_responses_failure_counts_incomplete_once() -> None:
    obs = Observation(finish_reasons={0: "incomplete"}, choices_seen={0})
    for stream in (True, False):
        registry = record(obs, stream=stream, operation="responses")
        reasons = "aoai_proxy_finish_reasons_total"
        assert value(registry, reasons, finish_reason="incomplete") == 1
        assert value(registry, reasons, finish_reason="other") == 0
