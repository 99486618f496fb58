"""`Metrics.record`: what one finished exchange adds to a fresh registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from proxy.observe.semantics import Observation
from proxy.relay.exchange import Exchange
from proxy.telemetry.metrics import Metrics

LABELS = {"deployment": "gpt-4o", "client": "unknown"}


def recorded(ex: Exchange) -> CollectorRegistry:
    registry = CollectorRegistry()
    Metrics(registry, ["gpt-4o"], []).record(ex)
    return registry


def finish_reasons(registry: CollectorRegistry) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "aoai_proxy_finish_reasons_total" and sample.value:
                found[sample.labels["finish_reason"]] = sample.value
    return found


def stream(status: int, obs: Observation) -> Exchange:
    return Exchange(started=0.0, wall_time=0.0, method="POST", path="/", deployment="gpt-4o",
                    stream=True, status=status, observation=obs)


def test_a_200_stream_in_which_no_choice_was_seen_ended_incomplete() -> None:
    # e.g. only the prompt-annotation chunk came before the connection dropped
    assert finish_reasons(recorded(stream(200, Observation(events=1)))) == {"incomplete": 1}


def test_each_choice_without_a_finish_reason_is_one_incomplete() -> None:
    obs = Observation(choices_seen={0, 1, 2}, finish_reasons={1: "stop"})
    assert finish_reasons(recorded(stream(200, obs))) == {"stop": 1, "incomplete": 2}


def test_a_finished_stream_is_not_incomplete() -> None:
    obs = Observation(choices_seen={0}, finish_reasons={0: "length"})
    assert finish_reasons(recorded(stream(200, obs))) == {"length": 1}


def test_an_error_status_is_never_incomplete() -> None:
    assert finish_reasons(recorded(stream(429, Observation()))) == {}
