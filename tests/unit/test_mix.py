"""The load generator's request mix: what it plans, before anything is sent."""

from __future__ import annotations

from collections import Counter

from proxy.traffic import mix as traffic_mix
from proxy.traffic.mix import DECK_SIZE, SCENARIOS, UNKNOWN_DEPLOYMENT, RequestPlanner


def test_every_deck_holds_each_scenario_in_its_weight() -> None:
    planner = RequestPlanner(["gpt-4o", "gpt-4o-mini"], seed=5)
    weights = {name: weight for name, weight, _ in SCENARIOS}
    for _ in range(3):
        deck = [planner.next() for _ in range(DECK_SIZE)]
        assert Counter(p.scenario for p in deck) == weights


def test_the_mix_is_realistic_and_well_formed() -> None:
    planner = RequestPlanner(["gpt-4o", "gpt-4o-mini"], seed=11)
    plans = [planner.next() for _ in range(4 * DECK_SIZE)]
    streams = [p for p in plans if p.stream]
    assert 0.5 < len(streams) / len(plans) < 0.9
    assert any(p.include_usage for p in streams) and any(not p.include_usage for p in streams)
    assert not any(p.include_usage for p in plans if not p.stream)
    assert any(p.simulator.get("filter_mode") == "async" for p in streams)
    assert {p.deployment for p in plans} == {"gpt-4o", "gpt-4o-mini", UNKNOWN_DEPLOYMENT}
    assert all(int(p.simulator["tokens"]) >= 1000 for p in plans if p.scenario == "long_stream")
    for plan in plans:
        assert plan.path.startswith(f"/openai/deployments/{plan.deployment}/chat/completions?")
        assert plan.path.endswith("api-version=2024-10-21")
        assert plan.body["stream"] is plan.stream
        assert plan.simulator["scenario"] in {
            "stop", "length", "tool_calls", "content_filter", "prompt_filter", "rate_limit",
            "server_error", "disconnect", "error_event",
        }  # fmt: skip
        assert (plan.abort_after_events is not None) == (plan.scenario == "client_abort")
        if plan.abort_after_events is not None:
            assert plan.stream
            assert plan.abort_after_events < int(plan.simulator["tokens"])
        pairs = [part.split("=") for part in plan.simulator_header.split("; ")]
        assert all(len(pair) == 2 and pair[0] and pair[1] for pair in pairs)


def test_the_same_seed_plans_the_same_requests() -> None:
    def plans(seed: int) -> list[traffic_mix.PlannedRequest]:
        planner = RequestPlanner(["gpt-4o"], seed=seed)
        return [planner.next() for _ in range(DECK_SIZE)]

    assert plans(3) == plans(3)
    assert plans(3) != plans(4)
