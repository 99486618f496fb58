"""What the load generator sends: a realistic mix of chat completions, dealt like cards.

Each `PlannedRequest` picks the simulator's behaviour with an `x-simulator: key=value; ...`
header (a real Azure resource ignores it), so one run covers every panel of the dashboard.

The mix is dealt like cards: every `DECK_SIZE` consecutive requests contain each scenario
exactly `weight` times, in shuffled order. Short runs therefore still cover every scenario, and
long runs keep the proportions without random drift.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.vocabulary import COMPLETION_CATEGORIES, DEFAULT_API_VERSION, PROMPT_CATEGORIES

__all__ = [
    "API_VERSION",
    "DECK_SIZE",
    "SCENARIOS",
    "UNKNOWN_DEPLOYMENT",
    "PlannedRequest",
    "RequestPlanner",
]

API_VERSION = DEFAULT_API_VERSION
UNKNOWN_DEPLOYMENT = "gpt-legacy"
"""A deployment name neither the proxy's config nor the simulator knows (-> 404)."""

_PROMPTS = (
    "Summarise the attached incident report in three bullet points.",
    "Write a haiku about server-sent events.",
    "Translate 'the stream was passed through unbuffered' into French and German.",
    "Explain the difference between p50 and p99 latency to a product manager.",
    "Draft a polite reply declining a meeting invitation.",
    "What is 4200 + 42?",
    "List five edge cases for an SSE parser.",
)
_OUTPUT_FILTER_CATEGORIES = (*COMPLETION_CATEGORIES, "profanity")
_PROMPT_FILTER_CATEGORIES = PROMPT_CATEGORIES
_WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@dataclass(frozen=True)
class PlannedRequest:
    """One request the generator is about to send."""

    scenario: str
    """Name of the mix entry (see `SCENARIOS`); the key of `LoadgenReport.by_scenario`."""
    deployment: str
    stream: bool
    include_usage: bool
    """Whether the body asks for `stream_options: {"include_usage": true}`."""
    simulator: dict[str, str]
    """The `x-simulator` settings, in header order."""
    body: dict[str, Any]
    abort_after_events: int | None = None
    """For client aborts: hang up after this many SSE events (`\\n\\n`) have arrived."""

    @property
    def path(self) -> str:
        return f"/openai/deployments/{self.deployment}/chat/completions?api-version={API_VERSION}"

    @property
    def simulator_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.simulator.items())



# Builders get the planner (its rng, time scale and deployments) and return a PlannedRequest.
_Builder = Callable[["RequestPlanner"], PlannedRequest]


def _chat(
    p: RequestPlanner,
    scenario: str,
    *,
    sim: dict[str, str],
    stream: bool | None = None,
    tokens: tuple[int, int] = (20, 300),
    deployment: str | None = None,
    max_tokens: int | None = None,
    tools: bool = False,
    abort_after_events: int | None = None,
) -> PlannedRequest:
    rng = p.rng
    is_stream = rng.random() < p.stream_share if stream is None else stream
    count = rng.randint(*tokens)
    settings = dict(sim)
    if "tokens" not in settings:
        settings["tokens"] = str(count)
    settings.setdefault("first_token_delay_ms", p.millis(rng.uniform(150, 900)))
    settings.setdefault("token_delay_ms", p.millis(rng.uniform(8, 30)))
    if is_stream and rng.random() < 0.2:
        settings["filter_mode"] = "async"
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": rng.choice(_PROMPTS)},
        ],
        "stream": is_stream,
    }
    include_usage = is_stream and rng.random() < 0.5
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if tools:
        body["tools"] = [_WEATHER_TOOL]
    return PlannedRequest(
        scenario=scenario,
        deployment=deployment or rng.choice(p.deployments),
        stream=is_stream,
        include_usage=include_usage,
        simulator=settings,
        body=body,
        abort_after_events=abort_after_events,
    )


def _length(p: RequestPlanner) -> PlannedRequest:
    limit = p.rng.randint(16, 128)
    return _chat(p, "length", sim={"scenario": "length", "tokens": str(limit)}, max_tokens=limit)


def _client_abort(p: RequestPlanner) -> PlannedRequest:
    # Long enough that the hang-up lands mid-stream, after the first few tokens.
    return _chat(
        p,
        "client_abort",
        sim={"scenario": "stop"},
        stream=True,
        tokens=(200, 400),
        abort_after_events=p.rng.randint(3, 15),
    )


SCENARIOS: tuple[tuple[str, int, _Builder], ...] = (
    # name, weight (requests per deck), builder
    ("stream", 16, lambda p: _chat(p, "stream", sim={"scenario": "stop"}, stream=True)),
    ("non_stream", 8, lambda p: _chat(p, "non_stream", sim={"scenario": "stop"}, stream=False)),
    (
        "long_stream",
        2,
        lambda p: _chat(
            p, "long_stream", sim={"scenario": "stop"}, stream=True, tokens=(1000, 2500)
        ),
    ),
    ("length", 3, _length),
    ("tool_calls", 3, lambda p: _chat(p, "tool_calls", sim={"scenario": "tool_calls"}, tools=True)),
    (
        "content_filter",
        1,
        lambda p: _chat(
            p,
            "content_filter",
            sim={"scenario": "content_filter", "category": p.rng.choice(_OUTPUT_FILTER_CATEGORIES)},
        ),
    ),
    (
        "prompt_filter",
        2,
        lambda p: _chat(
            p,
            "prompt_filter",
            sim={"scenario": "prompt_filter", "category": p.rng.choice(_PROMPT_FILTER_CATEGORIES)},
        ),
    ),
    # A short retry-after: with routing, a 429 cools its (upstream, deployment) pair for that
    # long, and the sample traffic should not block a whole demo deployment for seconds.
    ("rate_limit", 4, lambda p: _chat(p, "rate_limit",
                                      sim={"scenario": "rate_limit", "retry_after_s": "1"})),
    ("server_error", 2, lambda p: _chat(p, "server_error", sim={"scenario": "server_error"})),
    (
        "disconnect",
        1,
        lambda p: _chat(p, "disconnect", sim={"scenario": "disconnect"}, stream=True),
    ),
    (
        "error_event",
        1,
        lambda p: _chat(p, "error_event", sim={"scenario": "error_event"}, stream=True),
    ),
    (
        "unknown_deployment",
        2,
        lambda p: _chat(
            p, "unknown_deployment", sim={"scenario": "stop"}, deployment=UNKNOWN_DEPLOYMENT
        ),
    ),
    ("client_abort", 5, _client_abort),
)
DECK_SIZE = sum(weight for _, weight, _ in SCENARIOS)


class RequestPlanner:
    """Deals `PlannedRequest`s in the proportions of `SCENARIOS`.

    Deterministic for a given seed: the n-th request planned is the same whatever the
    concurrency, because planning never awaits.
    """

    stream_share = 0.7
    """Share of streams among scenarios that can go either way."""

    def __init__(
        self, deployments: Sequence[str], *, seed: int | None = None, time_scale: float = 1.0
    ) -> None:
        if not deployments:
            raise ValueError("at least one deployment is needed")
        self.deployments: tuple[str, ...] = tuple(deployments)
        self.rng: random.Random = random.Random(seed)
        self.time_scale: float = time_scale
        self._deck: list[int] = []

    def millis(self, ms: float) -> str:
        """A simulator delay in ms, scaled by `time_scale`, as the header wants it."""
        return str(round(ms * self.time_scale))

    def next(self) -> PlannedRequest:
        if not self._deck:
            self._deck = [i for i, (_, weight, _) in enumerate(SCENARIOS) for _ in range(weight)]
            self.rng.shuffle(self._deck)
        _, _, build = SCENARIOS[self._deck.pop()]
        return build(self)
