"""The shared vocabulary: one definition, and every user agrees with it."""

from __future__ import annotations

import pytest

from proxy import vocabulary
from proxy.observe import semantics
from proxy.simulator import wire
from proxy.traffic import mix


@pytest.mark.parametrize(("unfinished", "finished", "expected"), [
    (0, 0, 1),  # a stream cut before any choice: one incomplete
    (0, 2, 0),
    (1, 1, 1),
    (2, 0, 2),
])
def test_incomplete_finishes(unfinished: int, finished: int, expected: int) -> None:
    assert vocabulary.incomplete_finishes(unfinished, finished) == expected


def test_every_category_the_simulator_or_the_load_generator_flags_is_reported_by_name() -> None:
    assert wire.CATEGORIES <= semantics.FILTER_CATEGORIES
    planner = mix.RequestPlanner(["gpt-4o"], seed=1)
    plans = [planner.next() for _ in range(2000)]
    asked = {plan.simulator["category"] for plan in plans if "category" in plan.simulator}
    assert asked and asked <= wire.CATEGORIES, asked - wire.CATEGORIES
