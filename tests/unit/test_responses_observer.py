"""The Responses API observer (proxy/observe/responses.py) over recorded and hand-built streams.

Wire facts: docs/responses-wire.md. The recorded streams are the simulator's
(tests/data/streams/responses-*.sse, see record_responses.py there); the hand-built ones follow
the event shapes of the wire doc.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.observe.framing import Framer
from proxy.observe.observer import StreamObserver, observe_json
from proxy.observe.responses import RESPONSES
from proxy.observe.semantics import Observation, Usage, content_filter_events
from tests.unit.test_sse import _line, joined

STREAM_DIR = Path(__file__).parent.parent / "data" / "streams"
STREAMS = sorted(STREAM_DIR.glob("responses-*.sse"))


def observe(pieces: Iterable[bytes], *, fast_path: bool = True, **kwargs: Any) -> Observation:
    observer = StreamObserver(fast_path=fast_path, semantics=RESPONSES, **kwargs)
    for piece in pieces:
        observer.feed(piece)
    return observer.close()


def untimed(obs: Observation) -> Observation:
    return dataclasses.replace(obs, first_token_at=None, last_token_at=None)


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def event(obj: dict[str, Any], name: str | None = "") -> bytes:
    """One event as Azure frames it: `event: <type>` then the data line (name=None: no name)."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    head = b"" if name is None else b"event: " + (name or obj["type"]).encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def response(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, "output": [],
            "usage": None, "error": None, "incomplete_details": None, **fields}


USAGE = {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 12}, "output_tokens": 87,
         "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 123}
USAGE_SEEN = Usage(prompt_tokens=36, completion_tokens=87, cached_tokens=12, reasoning_tokens=64)


def text_delta(seq: int, delta: str, item: str = "msg_1", **extra: Any) -> dict[str, Any]:
    return {"type": "response.output_text.delta", "sequence_number": seq, "item_id": item,
            "output_index": 0, "content_index": 0, "delta": delta, "logprobs": [], **extra}


def lifecycle(seq: int, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "sequence_number": seq, "response": body}


def completed_stream(deltas: Iterable[str], terminal: dict[str, Any] | None = None) -> list[bytes]:
    """created, in_progress, the text deltas, then `terminal` (completed with USAGE)."""
    words = list(deltas)
    events = [lifecycle(0, "response.created", response("in_progress")),
              lifecycle(1, "response.in_progress", response("in_progress"))]
    events += [text_delta(2 + i, word) for i, word in enumerate(words)]
    events.append(terminal or lifecycle(2 + len(words), "response.completed",
                                        response("completed", usage=USAGE)))
    return [event(e) for e in events]


# --- the recorded streams: the mapping of the README's table -------------------------------

SIM_USAGE = {"prompt_tokens": 12}
EXPECTED: dict[str, dict[str, Any]] = {
    "responses-completed.sse": {
        "finish_reasons": {0: "stop"}, "output_deltas": 6, "events": 14,
        "usage": Usage(**SIM_USAGE, completion_tokens=6, cached_tokens=4)},
    "responses-max-output-tokens.sse": {
        "finish_reasons": {0: "length"}, "output_deltas": 6, "events": 14,
        "usage": Usage(**SIM_USAGE, completion_tokens=6)},
    "responses-content-filter-incomplete.sse": {
        "finish_reasons": {0: "content_filter"}, "output_deltas": 3, "events": 11,
        "usage": Usage(**SIM_USAGE, completion_tokens=3),
        "filter_categories": {"completion": {"hate"}}, "choice_filter_categories": {0: {"hate"}}},
    "responses-content-filter-kill.sse": {
        "finish_reasons": {0: "content_filter"}, "output_deltas": 0, "events": 3,
        "usage": Usage(**SIM_USAGE, completion_tokens=3), "error_code": "content_policy_violation"},
    "responses-tool-call.sse": {
        "finish_reasons": {0: "tool_calls"}, "output_deltas": 6, "events": 12,
        "usage": Usage(**SIM_USAGE, completion_tokens=6)},
    "responses-reasoning.sse": {
        "finish_reasons": {0: "stop"}, "output_deltas": 5, "events": 30,
        "usage": Usage(**SIM_USAGE, completion_tokens=45, cached_tokens=8, reasoning_tokens=40)},
    "responses-error-frame.sse": {
        "finish_reasons": {}, "output_deltas": 3, "events": 8, "error_code": "server_error"},
    "responses-failed.sse": {
        "finish_reasons": {0: "incomplete"}, "output_deltas": 3, "events": 8,
        "usage": Usage(**SIM_USAGE, completion_tokens=3), "error_code": "server_error"},
}
FILTER_EVENTS = {
    "responses-content-filter-incomplete.sse": [("completion", "hate")],
    "responses-content-filter-kill.sse": [("completion", "other")],
}


def test_every_recorded_responses_stream_has_expectations() -> None:
    assert sorted(EXPECTED) == [path.name for path in STREAMS]


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "full-parse"])
def test_recorded_responses_stream(name: str, fast_path: bool) -> None:
    expected = Observation(choices_seen={0}, **EXPECTED[name])
    obs = observe([(STREAM_DIR / name).read_bytes()], fast_path=fast_path)
    assert untimed(obs) == expected
    assert content_filter_events(obs) == FILTER_EVENTS.get(name, [])


@pytest.mark.parametrize("path", STREAMS, ids=[p.name for p in STREAMS])
def test_same_observation_for_every_split(path: Path) -> None:
    data = path.read_bytes()
    whole = untimed(observe([data], fast_path=False))
    assert untimed(observe([data])) == whole
    assert untimed(observe(data[i : i + 1] for i in range(len(data)))) == whole
    for cut in range(1, len(data)):
        assert untimed(observe([data[:cut], data[cut:]])) == whole, cut


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(0, 1 << 16), max_size=30),
       st.booleans())
def test_same_observation_for_random_splits(path: Path, cuts: list[int], crlf: bool) -> None:
    data = path.read_bytes()
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    pieces = split_at(data, [cut % (len(data) + 1) for cut in cuts])
    assert untimed(observe(pieces)) == untimed(observe([data], fast_path=False))


# Hand-built events that must each be read in full, mixed with template-shaped deltas.
ODD_EVENTS = [
    event(text_delta(5, "")),  # the learned shape, but empty: no output
    event(text_delta(5, "x", item="msg_2")),
    event(text_delta(5, "x", error={"code": "boom"})),  # openai-python raises on it
    event(text_delta(5, "x"), name="message"),  # another event name: same meaning
    event(text_delta(5, "x"), name=None),
    event(text_delta(5, 'a "quoted" \\ delta\u00e9')),
    event({**text_delta(5, "x"), "type": "response.reasoning_summary_text.delta"}),
    event({"type": "response.refusal.delta", "sequence_number": 3, "item_id": "msg_1",
           "output_index": 0, "content_index": 0, "delta": "no"}),
    event({"type": "response.function_call_arguments.delta", "sequence_number": 4,
           "item_id": "fc_1", "output_index": 1, "delta": '{"a":'}),
    event(text_delta(5, "x")).replace(b'"sequence_number":5', b'"sequence_number":5.5'),
    event(text_delta(5, "x")).replace(b'"logprobs":[]', b'"logprobs":[{"token":"x"}]'),
    b": keep-alive\n\n",
    b"data: [DONE]\n\n",
    b"event: error\ndata: not json\n\n",
    event({"type": "error", "sequence_number": 9, "error": {"code": "server_error"}}),
    event(lifecycle(9, "response.incomplete", response(
        "incomplete", incomplete_details={"reason": "max_output_tokens"}, usage=USAGE))),
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.builds(lambda seq, delta: event(text_delta(seq, delta)),
                          st.integers(0, 10**6), st.text(max_size=8)),
                st.sampled_from(ODD_EVENTS),
            ),
            st.booleans(),
        ),
        min_size=1, max_size=25,
    ),
    st.lists(st.integers(0, 1 << 16), max_size=30),
)
def test_any_mix_of_events_any_split(events: list[tuple[bytes, bool]], cuts: list[int]) -> None:
    data = b"".join(e.replace(b"\n", b"\r\n") if crlf else e for e, crlf in events)
    pieces = split_at(data, [cut % (len(data) + 1) for cut in cuts])
    expected = untimed(observe([data], fast_path=False, max_event_bytes=400))
    assert untimed(observe(pieces, max_event_bytes=400)) == expected
    assert untimed(observe([data], max_event_bytes=400)) == expected


def test_look_alike_deltas_after_a_learned_template_are_read_in_full() -> None:
    learned = [event(text_delta(i, f"w{i}")) for i in range(3)]
    for odd in ODD_EVENTS:
        pieces = [*learned, odd]
        full = untimed(observe(pieces, fast_path=False))
        assert untimed(observe(pieces)) == full, odd
        assert untimed(observe([b"".join(pieces)])) == full, odd


def test_plain_deltas_are_counted_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [0]
    real = json.loads

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    words = [f"w{i}" + "\\" * (i % 3) + '"' * (i % 2) for i in range(200)]
    pieces = completed_stream(words)
    obs = observe(b"".join(pieces[i : i + 7]) for i in range(0, len(pieces), 7))
    assert (obs.output_deltas, obs.usage) == (200, USAGE_SEEN)
    # created, in_progress, the first delta, its template check, completed
    assert calls[0] <= 5


def test_obfuscation_and_reasoning_deltas_take_the_fast_path_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [0]
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda *a, **k: (calls.__setitem__(0, calls[0] + 1),
                                                        real(*a, **k))[1])
    summary = [event({"type": "response.reasoning_summary_text.delta", "sequence_number": i,
                      "item_id": "rs_1", "output_index": 0, "summary_index": 0,
                      "delta": f"think {i}"}) for i in range(50)]
    text = [event(text_delta(50 + i, f"w{i}", obfuscation="x" * (i % 9))) for i in range(50)]
    obs = observe([*summary, *text])
    assert (obs.output_deltas, obs.events) == (50, 100)
    assert calls[0] <= 4


# --- the mapping, event by event ----------------------------------------------------------

def ended(status: str, **fields: Any) -> Observation:
    return observe(completed_stream(["Hi"], lifecycle(9, f"response.{status}",
                                                      response(status, **fields))))


def test_completed_is_stop_or_tool_calls() -> None:
    assert ended("completed").finish_reasons == {0: "stop"}
    call = {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"}
    message = {"type": "message", "content": []}
    assert ended("completed", output=[message, call]).finish_reasons == {0: "tool_calls"}


@pytest.mark.parametrize(("reason", "finish"), [
    ("max_output_tokens", "length"), ("content_filter", "content_filter"),
    ("something_new", "incomplete"), (None, "incomplete")])
def test_incomplete_by_reason(reason: str | None, finish: str) -> None:
    details = {"reason": reason} if reason else None
    obs = ended("incomplete", incomplete_details=details, usage=USAGE)
    assert (obs.finish_reasons, obs.usage) == ({0: finish}, USAGE_SEEN)
    expected = [("completion", "other")] if finish == "content_filter" else []
    assert content_filter_events(obs) == expected


def test_failed_and_cancelled_are_incomplete() -> None:
    obs = ended("failed", error={"code": "server_error", "message": "x"}, usage=USAGE)
    assert (obs.finish_reasons, obs.error_code, obs.usage) == (
        {0: "incomplete"}, "server_error", USAGE_SEEN)
    assert ended("cancelled").finish_reasons == {0: "incomplete"}


def test_a_stream_that_breaks_off_has_no_finish_reason() -> None:
    obs = observe(completed_stream(["a", "b"])[:-1])
    assert (obs.finish_reasons, obs.incomplete_choices, obs.output_deltas) == ({}, {0}, 2)


KILL = [event(lifecycle(0, "response.created", response("in_progress"))),
        event(lifecycle(1, "response.failed", response("failed", usage=USAGE))),
        event({"type": "error", "sequence_number": 2,
               "error": {"code": "content_policy_violation", "message": "m", "param": None}})]


@pytest.mark.parametrize("order", [(0, 1, 2), (0, 2, 1)])
def test_the_content_filter_kill_is_content_filter_in_either_order(order: tuple[int, ...]) -> None:
    obs = observe(KILL[i] for i in order)
    assert obs.finish_reasons == {0: "content_filter"}
    assert content_filter_events(obs) == [("completion", "other")]
    assert obs.usage == USAGE_SEEN


def test_error_code_at_top_level_as_the_sdk_types_it() -> None:
    obs = observe([event({"type": "error", "code": "content_policy_violation", "message": "m"})])
    assert obs.finish_reasons == {0: "content_filter"}
    obs = observe([event({"type": "error", "code": None, "message": "m"})])
    assert (obs.error_code, obs.finish_reasons) == ("error", {})


def test_completion_verdicts_from_content_filters() -> None:
    verdicts = [
        {"blocked": False, "source_type": "prompt",
         "content_filter_results": {"jailbreak": {"detected": False, "filtered": False}}},
        {"blocked": True, "source_type": "completion",
         "content_filter_results": {"violence": {"filtered": True, "severity": "high"},
                                    "protected_material_text": {"detected": True,
                                                                "filtered": True},
                                    "made_up": {"filtered": True}}},
    ]
    obs = ended("incomplete", incomplete_details={"reason": "content_filter"},
                content_filters=verdicts)
    assert content_filter_events(obs) == [("completion", "other"),
                                          ("completion", "protected_material_text"),
                                          ("completion", "violence")]


# --- non-stream bodies -------------------------------------------------------------------

def body(status: str, **fields: Any) -> bytes:
    return json.dumps(response(status, **fields)).encode()


def test_non_stream_bodies_get_the_same_mapping() -> None:
    def observed(raw: bytes) -> Observation:
        return observe_json(raw, semantics=RESPONSES)

    done = observed(body("completed", usage=USAGE, output=[
        {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}]))
    assert (done.finish_reasons, done.usage, done.events) == ({0: "stop"}, USAGE_SEEN, 1)
    call = {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"}
    assert observed(body("completed", output=[call])).finish_reasons == {0: "tool_calls"}
    length = observed(body("incomplete", incomplete_details={"reason": "max_output_tokens"}))
    assert length.finish_reasons == {0: "length"}
    filtered = observed(body("incomplete", incomplete_details={"reason": "content_filter"},
                             content_filters=[{"source_type": "completion",
                                               "content_filter_results": {
                                                   "sexual": {"filtered": True}}}]))
    assert content_filter_events(filtered) == [("completion", "sexual")]
    assert observed(body("failed", error={"code": "server_error"})).finish_reasons == {
        0: "incomplete"}


def prompt_block(verdicts: list[dict[str, Any]] | None, *, nested: bool = True) -> bytes:
    error: dict[str, Any] = {"message": "filtered", "type": None, "param": "prompt",
                             "code": "content_filter", "status": 400}
    outer: dict[str, Any] = {"error": error}
    if verdicts is not None:
        (error if nested else outer)["content_filters"] = verdicts
    return json.dumps(outer).encode()


@pytest.mark.parametrize("nested", [True, False])
def test_prompt_block_categories_from_content_filters(nested: bool) -> None:
    verdicts = [{"blocked": True, "source_type": "prompt", "content_filter_raw": [],
                 "content_filter_results": {"self_harm": {"filtered": True, "severity": "medium"},
                                            "jailbreak": {"detected": True, "filtered": True},
                                            "hate": {"filtered": False, "severity": "safe"}}}]
    obs = observe_json(prompt_block(verdicts, nested=nested), semantics=RESPONSES)
    assert content_filter_events(obs) == [("prompt", "jailbreak"), ("prompt", "self_harm")]
    assert obs.finish_reasons == {}


def test_prompt_block_without_verdicts_is_other() -> None:
    obs = observe_json(prompt_block(None), semantics=RESPONSES)
    assert content_filter_events(obs) == [("prompt", "other")]


def test_usage_details_may_be_missing_or_null() -> None:
    usage = {"input_tokens": 5, "output_tokens": 7, "input_tokens_details": None}
    obs = observe_json(body("completed", usage=usage), semantics=RESPONSES)
    assert obs.usage == Usage(prompt_tokens=5, completion_tokens=7)


# --- the eight regressions other gateways shipped (docs/responses-wire.md, section 8) --------

def test_regression_1_a_split_terminal_event_still_gives_usage() -> None:
    pieces = completed_stream(["a", "b"])
    terminal = pieces[-1]
    for cut in range(1, len(terminal)):
        obs = observe([*pieces[:-1], terminal[:cut], terminal[cut:]])
        assert (obs.usage, obs.finish_reasons) == (USAGE_SEEN, {0: "stop"}), cut


@pytest.mark.parametrize("status", ["incomplete", "failed"])
def test_regression_2_usage_from_incomplete_and_failed(status: str) -> None:
    assert ended(status, usage=USAGE).usage == USAGE_SEEN


# Regression 3 (a kept content-length truncating the stream) is a byte-path test:
# tests/integration/test_responses.py::test_regression_3_a_stream_with_content_length_is_whole


def test_regression_4_completed_usage_reaches_the_token_counters() -> None:
    # The metric side is tests/unit/test_telemetry_metrics.py; here: the observer keeps it whatever
    # follows (a stray [DONE], as some emulators add).
    pieces = [*completed_stream(["a"]), b"data: [DONE]\n\n"]
    assert observe(pieces).usage == USAGE_SEEN


# Regression 5 (token metrics only for paths ending in /completions) is the tap's choice by
# operation: tests/unit/test_operation.py and tests/integration/test_responses.py.


def test_regression_6_the_filter_reason_after_response_failed_is_kept() -> None:
    data = b"".join(KILL)
    at_failed = data.index(b"event: error")
    for pieces in ([data], [data[:at_failed], data[at_failed:]], KILL):
        assert observe(pieces).finish_reasons == {0: "content_filter"}


def test_regression_7_events_without_choices_or_id_are_all_read() -> None:
    pieces = completed_stream(["a", "b", "c"])
    obs = observe(pieces)
    assert (obs.events, obs.output_deltas, obs.parse_errors) == (len(pieces), 3, 0)
    assert obs.finish_reasons == {0: "stop"}


def test_regression_8_first_token_is_the_first_output_not_the_first_event() -> None:
    path = STREAM_DIR / "responses-reasoning.sse"
    events = [e + b"\n\n" for e in path.read_bytes().split(b"\n\n") if e]
    now = [0.0]
    observer = StreamObserver(clock=lambda: now[0], semantics=RESPONSES)
    first_output = next(i for i, e in enumerate(events)
                        if e.startswith(b"event: response.output_text.delta"))
    last_output = max(i for i, e in enumerate(events)
                      if e.startswith(b"event: response.output_text.delta"))
    for i, piece in enumerate(events):
        now[0] = float(i)
        observer.feed(piece)
    obs = observer.close()
    assert first_output > 10  # after the reasoning summary, as recorded
    assert (obs.first_token_at, obs.last_token_at) == (float(first_output), float(last_output))


def test_refusal_and_function_arguments_are_output_summaries_are_not() -> None:
    refusal = {"type": "response.refusal.delta", "sequence_number": 2, "item_id": "m",
               "output_index": 0, "content_index": 0, "delta": "I can't"}
    arguments = {"type": "response.function_call_arguments.delta", "sequence_number": 2,
                 "item_id": "fc", "output_index": 0, "delta": "{"}
    summary = {"type": "response.reasoning_summary_text.delta", "sequence_number": 2,
               "item_id": "rs", "output_index": 0, "summary_index": 0, "delta": "Hmm"}
    assert observe([event(refusal)]).first_token_at is not None
    assert observe([event(arguments)]).first_token_at is not None
    assert observe([event(summary)]).first_token_at is None


# --- what came earlier never changes how a later event counts (issue 10, bug 3) -------------

def test_an_oversized_event_does_not_change_what_follows() -> None:
    huge = event({"type": "response.output_text.done", "sequence_number": 8, "item_id": "m",
                  "output_index": 0, "content_index": 0, "text": "x" * 5000})
    pieces = completed_stream(["a", "b"])
    with_huge = [*pieces[:-1], huge, pieces[-1]]
    obs = observe(with_huge, max_event_bytes=1000)
    assert (obs.usage, obs.finish_reasons, obs.output_deltas, obs.oversized_events) == (
        USAGE_SEEN, {0: "stop"}, 2, 1)
    data = b"".join(with_huge)
    for cut in range(0, len(data), 97):
        assert untimed(observe([data[:cut], data[cut:]], max_event_bytes=1000)) == untimed(obs)


def test_chat_shaped_usage_in_a_responses_stream_is_not_read_as_chat() -> None:
    # A Responses stream carrying a chat-looking usage chunk (say, from a misrouted upstream):
    # only the Responses terminal event's usage counts, wherever that chunk comes.
    chat_usage = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    pieces = completed_stream(["a"])
    for at in range(len(pieces) + 1):
        obs = observe([*pieces[:at], chat_usage, *pieces[at:]])
        assert obs.usage == USAGE_SEEN, at


MALFORMED = [
    b"event: x\ndata: not json\n\n",
    b"data: [1, 2]\n\n",
    b'data: {"type": ["response.completed"], "response": {"status": "completed"}}\n\n',
    b'data: {"type": {"a": 1}, "delta": "x"}\n\n',
    b'data: {"type": "error", "error": "bad"}\n\n',
    b'data: {"type": "error", "error": [1], "code": {"x": 1}}\n\n',
    b'data: {"type": "response.failed", "response": {"status": ["failed"], "error": 7}}\n\n',
    (b'data: {"type": "response.incomplete", "response": {"status": "incomplete", '
    b'"incomplete_details": {"reason": ["content_filter"]}, "usage": "many"}}\n\n'),
    (b'data: {"response": {"content_filters": [1, null, {"source_type": ["prompt"], '
    b'"content_filter_results": {"hate": true}}], "output": {"type": "function_call"}}}\n\n'),
    (b'data: {"status": "completed", "output": [1, {"type": "function_call"}], '
    b'"usage": {"input_tokens": -1, "output_tokens": "x", "output_tokens_details": 5}}\n\n'),
    b'data: {"type": "response.output_text.delta", "delta": ["x"], "sequence_number": "a"}\n\n',
]


def test_malformed_events_never_raise() -> None:
    obs = observe(MALFORMED)
    assert (obs.parse_errors, obs.events) == (2, len(MALFORMED))
    assert obs.finish_reasons == {0: "tool_calls"}  # the one well-formed ending
    one_by_one = StreamObserver(semantics=RESPONSES)
    for piece in MALFORMED:
        for i in range(len(piece)):
            one_by_one.feed(piece[i : i + 1])
    assert untimed(one_by_one.close()) == untimed(obs)


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.sampled_from(["response.completed", "completed", "failed", "incomplete", "error",
                       "content_policy_violation", "response.output_text.delta",
                       "function_call", "prompt", "completion"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "response", "status", "error", "code", "output", "usage",
                         "delta", "content_filters", "source_type", "content_filter_results",
                         "incomplete_details", "reason", "object", "input_tokens"]),
        inner, max_size=5),
    max_leaves=20))
def test_any_json_never_raises(value: Any) -> None:
    data = json.dumps(value).encode()
    observe([b"data: " + data + b"\n\n"])
    observe_json(data, semantics=RESPONSES)


# --- the framer's fast paths for named events frame exactly as the others ------------------

def framed(pieces: Iterable[bytes], named: bool, max_event_bytes: int) -> list[Any]:
    framer = Framer(max_event_bytes, named=named)
    out: list[Any] = []
    for piece in pieces:
        frames = framer.feed(piece)
        out.append((frames.lead, frames.settled,
                    [frames.data[a:b] + frames.data[b:c] for a, b, c in frames.spans]))
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_line, st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"])), max_size=30),
    st.lists(st.integers(min_value=0, max_value=1 << 12), max_size=12),
    st.booleans(),
    st.integers(min_value=0, max_value=60),
)
def test_named_framing_frames_as_the_default(lines: list[tuple[bytes, bytes]], cuts: list[int],
                                            bom: bool, max_event_bytes: int) -> None:
    stream = joined(lines, bom)
    pieces = split_at(stream, cuts)
    assert framed(pieces, True, max_event_bytes) == framed(pieces, False, max_event_bytes)


def test_named_framing_of_recorded_streams_piece_by_event() -> None:
    for path in STREAMS:
        data = path.read_bytes()
        pieces = [e + b"\n\n" for e in data.split(b"\n\n") if e]
        assert framed(pieces, True, 1 << 20) == framed(pieces, False, 1 << 20)
        single = Framer(named=True)
        single.feed(b"x\n\n")  # past the stream start
        assert all(single.single(p) == len(p) - 2 for p in pieces)


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
def test_same_observation_for_pieces_of_whole_events(path: Path) -> None:
    # Cut only between events, several to a piece: the pieces the observer walks by its
    # templates' matches, handing the framer what follows the first miss.
    data = path.read_bytes()
    ends = [end for _, _, end in Framer(named=True).feed(data).spans]
    expected = untimed(observe([data]))
    for per_piece in (1, 2, 3, 7):
        pieces = split_at(data, ends[per_piece - 1 : -1 : per_piece])
        assert untimed(observe(pieces)) == expected, per_piece
