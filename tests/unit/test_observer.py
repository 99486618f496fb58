"""StreamObserver and observe_json over recorded Azure chat-completion streams and bodies
(the Responses API's are tests/unit/test_responses_observer.py)."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.observe import templates
from proxy.observe.observer import StreamObserver, observe_json
from proxy.observe.semantics import Observation, Usage, content_filter_events

STREAM_DIR = Path(__file__).parent.parent / "data" / "streams"
STREAMS = sorted(p for p in STREAM_DIR.glob("*.sse") if not p.name.startswith("responses-"))


def stream(name: str) -> bytes:
    return (STREAM_DIR / name).read_bytes()


def observe(pieces: Iterable[bytes], *, fast_path: bool = True, **kwargs: Any) -> Observation:
    observer = StreamObserver(fast_path=fast_path, **kwargs)
    for piece in pieces:
        observer.feed(piece)
    return observer.close()


def untimed(obs: Observation) -> Observation:
    return dataclasses.replace(obs, first_token_at=None, last_token_at=None)


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def events_of(data: bytes) -> list[bytes]:
    """The `data:` payloads of a "\\n\\n"-framed single-line stream."""
    return [e.removeprefix(b"data: ") for e in data.split(b"\n\n") if e.startswith(b"data: ")]


def frame(payloads: Iterable[bytes]) -> list[bytes]:
    return [b"data: " + p + b"\n\n" for p in payloads]


# --- expected observations of the recorded streams -----------------------------------------

STOP = {0: "stop"}
EXPECTED: dict[str, dict[str, Any]] = {
    "azure-default-gpt-4o-mini.sse": {"output_deltas": 10, "finish_reasons": STOP, "events": 14},
    "azure-default-gpt-4o-mini-crlf.sse": {
        "output_deltas": 10,
        "finish_reasons": STOP,
        "events": 14,
    },
    "azure-default-gpt-4o-mini-include-usage.sse": {
        "output_deltas": 10,
        "finish_reasons": STOP,
        "events": 15,
        "usage": Usage(prompt_tokens=16, completion_tokens=10),
    },
    "azure-v1-include-usage.sse": {
        "output_deltas": 6,
        "finish_reasons": STOP,
        "events": 11,
        "usage": Usage(prompt_tokens=15, completion_tokens=12),
    },
    "azure-tool-calls.sse": {
        "output_deltas": 9,
        "finish_reasons": {0: "tool_calls"},
        "events": 14,
        "usage": Usage(prompt_tokens=70, completion_tokens=98, reasoning_tokens=64),
    },
    "azure-async-filter-blocked.sse": {
        "output_deltas": 7,
        "finish_reasons": {0: "content_filter"},
        "events": 12,
        "filter_categories": {"completion": {"protected_material_text"}},
        "choice_filter_categories": {0: {"protected_material_text"}},
    },
    "azure-async-filter-passing.sse": {"output_deltas": 7, "finish_reasons": STOP, "events": 12},
    "azure-default-content-filter.sse": {
        "output_deltas": 4,
        "finish_reasons": {0: "content_filter"},
        "events": 8,
        "filter_categories": {"completion": {"violence"}},
        "choice_filter_categories": {0: {"violence"}},
    },
    "azure-n2.sse": {
        "output_deltas": 10,
        "finish_reasons": {0: "stop", 1: "length"},
        "choices_seen": {0, 1},
        "events": 16,
    },
    "azure-error-event.sse": {
        "output_deltas": 3,
        "finish_reasons": {},
        "events": 6,
        "error_code": "error",
        "done": False,
    },
    "client-quirks.sse": {
        "output_deltas": 2,
        "finish_reasons": STOP,
        "events": 8,
        "parse_errors": 2,
    },
}
CONTENT_FILTER_EVENTS = {
    "azure-async-filter-blocked.sse": [("completion", "protected_material_text")],
    "azure-default-content-filter.sse": [("completion", "violence")],
}


def test_every_recorded_stream_has_expectations() -> None:
    assert sorted(EXPECTED) == [path.name for path in STREAMS]


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "full-parse"])
def test_recorded_stream_observation(name: str, fast_path: bool) -> None:
    defaults = Observation(choices_seen={0}, done=True)
    expected = dataclasses.replace(defaults, **EXPECTED[name])
    assert untimed(observe([stream(name)], fast_path=fast_path)) == expected
    assert content_filter_events(expected) == CONTENT_FILTER_EVENTS.get(name, [])


@pytest.mark.parametrize("path", STREAMS, ids=[p.name for p in STREAMS])
def test_same_observation_for_every_split(path: Path) -> None:
    data = path.read_bytes()
    whole = untimed(observe([data]))
    assert untimed(observe([data], fast_path=False)) == whole
    assert untimed(observe(data[i : i + 1] for i in range(len(data)))) == whole
    for cut in range(1, len(data)):
        assert untimed(observe([data[:cut], data[cut:]])) == whole, cut


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(STREAMS),
    st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=30),
)
def test_same_observation_for_random_splits(path: Path, cuts: list[int]) -> None:
    data = path.read_bytes()
    pieces = split_at(data, [cut % (len(data) + 1) for cut in cuts])
    assert untimed(observe(pieces)) == untimed(observe([data], fast_path=False))


def test_token_times_come_from_the_clock_at_the_pieces_with_output() -> None:
    now = [0.0]
    observer = StreamObserver(clock=lambda: now[0])
    for i, piece in enumerate(frame(events_of(stream("azure-default-gpt-4o-mini.sse")))):
        now[0] = float(i)
        observer.feed(piece)
    obs = observer.close()
    # pieces: 0 prompt annotation, 1 role (content ""), 2..11 content, 12 finish, 13 [DONE]
    assert (obs.first_token_at, obs.last_token_at) == (2.0, 11.0)


def test_no_output_no_token_times() -> None:
    obs = observe([stream("azure-default-gpt-4o-mini.sse").split(b"\n\n", 2)[0] + b"\n\n"])
    assert obs.first_token_at is None
    assert obs.last_token_at is None
    assert obs.incomplete_choices == set()


def test_error_event_leaves_the_choice_incomplete() -> None:
    obs = observe([stream("azure-error-event.sse")])
    assert obs.incomplete_choices == {0}


# --- fast path versus full parse ------------------------------------------------------------


def reencodings(payload: bytes) -> Iterator[bytes]:
    """The same JSON written other ways: other key orders, whitespace, escapes."""
    obj = json.loads(payload)
    yield json.dumps(obj).encode()  # ", " and ": " separators
    yield json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    yield json.dumps(_reversed_keys(obj), separators=(",", ":")).encode()
    yield json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode()
    yield json.dumps(obj, indent=1).encode().replace(b"\n", b" ")


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(v) for k, v in reversed(value.items())}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


@pytest.mark.parametrize("path", STREAMS, ids=[p.name for p in STREAMS])
@pytest.mark.parametrize("variant", range(5))
def test_reencoded_streams_observe_the_same(path: Path, variant: int) -> None:
    data = path.read_bytes().replace(b"\r\n", b"\n")
    if path.name == "client-quirks.sse":
        data = b"".join(frame(events_of(stream("azure-default-gpt-4o-mini.sse"))))
    original = untimed(observe([data], fast_path=False))
    payloads = []
    for payload in events_of(data):
        if payload.startswith(b"{"):
            payload = list(reencodings(payload))[variant]
        payloads.append(payload)
    pieces = frame(payloads)
    assert untimed(observe(pieces)) == original
    assert untimed(observe([b"".join(pieces)])) == original
    assert untimed(observe(pieces, fast_path=False)) == original


def azure_chunk(content: str, obfuscation: str = "", index: int = 0, **choice: Any) -> bytes:
    """A default-mode content chunk laid out like the real capture."""
    cf = {k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual")}
    body = {
        "choices": [
            {
                "content_filter_results": cf,
                "delta": {"content": content},
                "finish_reason": None,
                "index": index,
                "logprobs": None,
                **choice,
            }
        ],
        "created": 1762402679,
        "id": "chatcmpl-CYljbWrmFtdLB60LvT3bgBwXiIdDo",
        "model": "gpt-4o-mini-2024-07-18",
        "obfuscation": obfuscation,
        "object": "chat.completion.chunk",
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def count_json_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = json.loads

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)  # the observer calls json.loads
    return calls


def test_ordinary_content_chunks_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_json_loads(monkeypatch)
    contents = ["w", "\\", 'say "hi"', "\u00e9\u2713\U0001f600", "a\\\\", "\n\t"]
    pieces = frame(azure_chunk(f"{i}{contents[i % 6]}", "o" * (i % 16)) for i in range(200))
    obs = observe(pieces)
    assert obs.output_deltas == 200
    assert calls[0] <= 3  # the first chunk, and the probe that learns its template


def test_multi_event_pieces_use_the_fast_path_too(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_json_loads(monkeypatch)
    pieces = frame(azure_chunk(f"w{i}", "o" * (i % 7)) for i in range(99))
    obs = observe(b"".join(pieces[i : i + 3]) for i in range(0, 99, 3))
    assert obs.output_deltas == 99
    assert calls[0] <= 3


def test_fast_path_is_not_fooled_by_look_alike_chunks() -> None:
    learned = [azure_chunk("a", "x"), azure_chunk("b", "")]
    tricky = [
        azure_chunk(""),  # same bytes outside the strings, but no output
        azure_chunk("c", finish_reason="stop"),
        azure_chunk("d", index=1),
        azure_chunk("e", content_filter_results={"hate": {"filtered": True, "severity": "high"}}),
        azure_chunk('"},"finish_reason":"length","index":0}],"x":"'),  # escaped look-alike
        azure_chunk("f\\"),
        azure_chunk("g", "\\\\"),
        azure_chunk("h").replace(b'"finish_reason":null', b'"finish_reason": null'),
        azure_chunk("i").replace(b"}]", b'}],"usage":{"prompt_tokens":5}'),
        azure_chunk("j").replace(b"}]", b'}],"error":{"code":"boom"}'),
    ]
    for piece in tricky:
        check_fast_equals_full([*frame(learned), *frame([piece])])
    # A content ending in a backslash: its closing quote is real. Reading past it would let
    # this re-nested chunk (the delta now in a choice without index) pass as the learned shape.
    learned = [azure_chunk("k\\", index=1), azure_chunk("l\\\\", index=1)]
    renested = azure_chunk("m\\", index=1).replace(b'"},"finish', b'"}},{"finish')
    check_fast_equals_full([*frame(learned), *frame([renested])])
    # Data lines joined with "\n": a template must match the whole event, not a prefix of it.
    joined = b"data: " + learned[0] + b'\ndata:\ndata: {"x":1}\n\n'
    check_fast_equals_full([*frame(learned), joined])


def test_chunks_with_more_than_output_are_always_parsed() -> None:
    # A chunk carrying output and a finish reason must not become a template: a later chunk of
    # the same shape has to set its finish reason again (the last one wins).
    pieces = frame(
        [
            azure_chunk("a", finish_reason="length"),
            azure_chunk("b", finish_reason="stop"),
            azure_chunk("c", finish_reason="length"),
        ]
    )
    assert observe(pieces).finish_reasons == {0: "length"}
    check_fast_equals_full(pieces)


def check_fast_equals_full(pieces: list[bytes]) -> None:
    full = untimed(observe(pieces, fast_path=False))
    assert untimed(observe(pieces)) == full, pieces[-1]
    assert untimed(observe([b"".join(pieces)])) == full, pieces[-1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=12), st.text(alphabet="abcXYZ019", max_size=16), st.integers(0, 2)
        ),
        min_size=1,
        max_size=12,
    )
)
def test_fast_and_full_parse_agree_on_any_content(chunks: list[tuple[str, str, int]]) -> None:
    pieces = frame(azure_chunk(content, obf, index) for content, obf, index in chunks)
    full = untimed(observe(pieces, fast_path=False))
    assert untimed(observe(pieces)) == full
    assert untimed(observe([b"".join(pieces)])) == full
    assert full.output_deltas == sum(1 for content, _, _ in chunks if content)


def test_fast_path_learns_tool_call_argument_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_json_loads(monkeypatch)
    tool = (
        '{"choices":[{"content_filter_results":{},"delta":{"tool_calls":[{"function":'
        '{"arguments":%s},"index":0}]},"finish_reason":null,"index":0,"logprobs":null}],'
        '"created":1,"id":"c","model":"m","obfuscation":"%s","object":"chat.completion.chunk"}'
    )
    args = ['{"ci', 'ty":', '"Ro', 'me"}', ""] * 20
    pieces = frame((tool % (json.dumps(a), "z" * i)).encode() for i, a in enumerate(args))
    obs = observe(pieces)
    assert obs.output_deltas == len(args)
    assert calls[0] <= 3


# --- pieces holding many events ------------------------------------------------------------
# Under load one upstream read carries many events and may end mid-event; the observer walks
# such a piece in place. Whatever the split, it must see what the decoder sees.

BOUNDARY = re.compile(rb"\r?\n\r?\n")


def by_events(data: bytes, per_piece: int, shift: int = 0) -> list[bytes]:
    """Pieces of `per_piece` events each, every cut moved `shift` bytes from an event's end."""
    ends = [m.end() for m in BOUNDARY.finditer(data)][per_piece - 1 :: per_piece]
    return split_at(data, [min(max(end + shift, 0), len(data)) for end in ends])


def check_splits(data: bytes, **kwargs: Any) -> Observation:
    """Every way of cutting `data` tried here observes what the decoder-only full parse of it
    whole does; returns that observation."""
    expected = untimed(observe([data], fast_path=False, **kwargs))
    assert untimed(observe([data], **kwargs)) == expected
    for per_piece in (1, 2, 3, 5, 1000):
        for shift in (-2, -1, 0, 1, 2, 9, 150):
            pieces = by_events(data, per_piece, shift)
            assert untimed(observe(pieces, **kwargs)) == expected, (per_piece, shift)
    assert untimed(observe((data[i : i + 1] for i in range(len(data))), **kwargs)) == expected
    for cut in range(len(data) + 1):
        assert untimed(observe([data[:cut], data[cut:]], **kwargs)) == expected, cut
    return expected


def annotation_chunk(index: int) -> bytes:
    """An async-filter verdict on a choice: no delta, so no output."""
    verdict = {"hate": {"filtered": False, "severity": "safe"}}
    offsets = {"check_offset": 1, "start_offset": 1, "end_offset": 9}
    body = {"choices": [{"content_filter_offsets": offsets, "content_filter_results": verdict,
                         "finish_reason": None, "index": index}], "id": "", "object": ""}
    return json.dumps(body, separators=(",", ":")).encode()


USAGE_CHUNK = b'{"choices":[],"id":"x","usage":{"prompt_tokens":9,"completion_tokens":7}}'


def mixed_stream() -> bytes:
    """Template hits mixed with every kind of miss, all "\\n"-framed."""
    hits = [azure_chunk(f"w{i}", "o" * (i % 5)) for i in range(6)]
    lines = azure_chunk("split", "zz").split(b',"finish_reason"')
    return b"".join(
        [
            *frame([azure_chunk(""), *hits[:3]]),  # no output, then three hits
            b": keep-alive\n\n",
            *frame([azure_chunk("one", index=1), azure_chunk("two", "q", index=1)]),
            b"\n\n\n",  # stray blank lines between events
            *frame([annotation_chunk(0), hits[3], azure_chunk('esc \\" \\\\', "\\\\")]),
            b"event: chunk\ndata: " + hits[4] + b"\n\n",  # named: two lines
            b"data: " + lines[0] + b'\ndata: ,"finish_reason"' + lines[1] + b"\n\n",
            b"data:" + hits[5] + b"\n\n",  # no space after the colon
            *frame([USAGE_CHUNK, b"not json", azure_chunk("x", "y"), azure_chunk("end")]),
            b"data: " + hits[0] + b"\n: a comment line inside an event\n\n",
            *frame([azure_chunk("f", finish_reason="stop"), azure_chunk("g", index=1)]),
            *frame([b"[DONE]", azure_chunk("after done")]),
        ]
    )


def test_many_events_per_piece_with_template_hits_and_misses() -> None:
    obs = check_splits(mixed_stream())
    assert (obs.output_deltas, obs.events, obs.parse_errors) == (15, 21, 1)
    assert obs.usage == Usage(prompt_tokens=9, completion_tokens=7)
    assert (obs.done, obs.finish_reasons) == (True, {0: "stop"})


def test_many_events_per_piece_with_crlf_and_mixed_line_ends() -> None:
    data = mixed_stream()
    expected = check_splits(data)
    assert check_splits(data.replace(b"\n", b"\r\n")) == expected
    # Every other event "\r\n"-framed: pieces with and without "\r" alternate.
    events = data.split(b"\n\n")
    mixed = b"".join(
        e + b"\n\n" if i % 2 else e.replace(b"\n", b"\r\n") + b"\r\n\r\n"
        for i, e in enumerate(events[:-1])
    )
    assert check_splits(mixed) == untimed(observe([mixed], fast_path=False))


def test_oversized_event_in_a_many_event_piece() -> None:
    hits = frame(azure_chunk(f"w{i}", "o" * i) for i in range(8))
    big = frame([azure_chunk("x" * 300)])[0]  # the template's shape, over the limit
    big_lines = b"data: " + azure_chunk("y" * 300) + b"\ndata: \n\n"
    data = b"".join([*hits[:3], big, *hits[3:5], big_lines, *hits[5:]])
    obs = check_splits(data, max_event_bytes=600)
    assert (obs.oversized_events, obs.output_deltas, obs.events) == (2, 8, 8)


def test_usage_chunk_amid_content_chunks_in_one_piece() -> None:
    chunks = [azure_chunk(f"w{i}") for i in range(6)]
    data = b"".join(frame([*chunks[:3], USAGE_CHUNK, *chunks[3:]]))
    obs = check_splits(data)
    assert (obs.usage, obs.output_deltas) == (Usage(prompt_tokens=9, completion_tokens=7), 6)


def test_pieces_cut_mid_event_use_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_json_loads(monkeypatch)
    data = b"".join(frame(azure_chunk(f"w{i}", "o" * (i % 7)) for i in range(99)))
    obs = observe(by_events(data, 4, shift=-150))
    assert (obs.output_deltas, obs.events) == (99, 99)
    assert calls[0] <= 3


def test_line_break_inside_a_string_of_a_multi_line_event_is_the_same_for_any_split() -> None:
    # The decoder joins the two data lines with "\n", inside the content string: a template
    # matches the joined data as it always did (raw control bytes in strings go unchecked), and
    # the walk, which matches one-line events only, must leave the event to the decoder.
    learned = frame([azure_chunk("a"), azure_chunk("b")])
    head, tail = azure_chunk("c|d").split(b"|")
    data = b"".join([*learned, b"data: " + head + b"\ndata: " + tail + b"\n\n", *learned])
    whole = untimed(observe([data]))
    assert whole.output_deltas == 5
    # Not a data line after the break: the decoder's data is cut short, a parse error.
    other = data.replace(b"\ndata: " + tail, b"\nevent: " + tail)
    assert check_splits(other).parse_errors == 1
    for per_piece in (1, 2, 3):
        for shift in (-3, 0, 2):
            assert untimed(observe(by_events(data, per_piece, shift))) == whole
    for cut in range(len(data) + 1):
        assert untimed(observe([data[:cut], data[cut:]])) == whole, cut


def test_templates_compile_only_once_a_chunk_opens_like_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiled: list[Any] = []
    real = templates._pattern

    def counting(*args: Any, **kwargs: Any) -> Any:
        compiled.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(templates, "_pattern", counting)
    # Every chunk with a verdict block of its own: templates are learned, never compiled.
    verdicts = [{"hate": {"filtered": False, "severity": "s" * i}} for i in range(20)]
    pieces = frame(azure_chunk(f"w{i}", content_filter_results=v) for i, v in enumerate(verdicts))
    assert observe(pieces).output_deltas == 20
    assert compiled == []
    assert observe(frame(azure_chunk(f"w{i}") for i in range(5))).output_deltas == 5
    assert compiled


SPECIAL_EVENTS = [
    b": comment\n\n",
    b"\n",
    b"data: [DONE]\n\n",
    b"data: not json\n\n",
    b'data: {"error":{"code":"boom"}}\n\n',
    b"data: " + USAGE_CHUNK + b"\n\n",
    b"data: " + annotation_chunk(1) + b"\n\n",
    b"data: " + azure_chunk("s", finish_reason="length") + b"\n\n",
    b"data: " + azure_chunk("x" * 300) + b"\n\n",  # oversized at 600
    b"event: e\ndata: " + azure_chunk("named") + b"\n\n",
    b"data:" + azure_chunk("tight") + b"\n\n",
    b"data: " + azure_chunk("two").replace(b',"finish_reason"', b'\ndata: ,"finish_reason"')
    + b"\n\n",
    b"data: " + azure_chunk("br|ok").replace(b"|", b"\nevent: ") + b"\n\n",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.builds(
                    lambda content, obf, index: b"data: " + azure_chunk(content, obf, index)
                    + b"\n\n",
                    st.text(max_size=8),
                    st.text(alphabet="abcXYZ019", max_size=6),
                    st.integers(0, 1),
                ),
                st.sampled_from(SPECIAL_EVENTS),
            ),
            st.booleans(),
        ),
        min_size=1,
        max_size=25,
    ),
    st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=30),
)
def test_any_mix_of_events_any_split(events: list[tuple[bytes, bool]], cuts: list[int]) -> None:
    data = b"".join(e.replace(b"\n", b"\r\n") if crlf else e for e, crlf in events)
    pieces = split_at(data, [cut % (len(data) + 1) for cut in cuts])
    expected = untimed(observe([data], fast_path=False, max_event_bytes=600))
    assert untimed(observe(pieces, max_event_bytes=600)) == expected
    assert untimed(observe([data], max_event_bytes=600)) == expected


# --- malformed input --------------------------------------------------------------------------

MALFORMED = [
    b"data: not json\n\n",
    b"data:\n\n",
    b"data: [1, 2]\n\n",
    b"data: 42\n\n",
    b'data: "a string"\n\n',
    b'data: {"choices": "x"}\n\n',
    b'data: {"a":"\xff"}\n\n',  # not UTF-8
    b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n",
    b'data: {"choices":[1, null, {"index":"a"}, {"index":true,"delta":{}}]}\n\n',
    b'data: {"choices":[{"delta":"x","finish_reason":7,"content_filter_results":[]}]}\n\n',
    b'data: {"usage":"x","error":false,"prompt_filter_results":{"a":1}}\n\n',
    b'data: {"usage":{"prompt_tokens":"x","completion_tokens":-1,"prompt_tokens_details":7}}\n\n',
]


def test_malformed_events_never_raise_and_are_counted() -> None:
    obs = observe(MALFORMED)
    assert obs.parse_errors == 7
    assert obs.events == len(MALFORMED)
    assert obs.usage == Usage()  # present but nonsense: zeros
    assert obs.choices_seen == set()
    observer = StreamObserver()
    for piece in MALFORMED:
        for i in range(len(piece)):
            observer.feed(piece[i : i + 1])
    assert untimed(observer.close()) == untimed(obs)


def test_oversized_events_are_counted_and_decoding_goes_on() -> None:
    pieces = [*frame([azure_chunk("x" * 2000)]), *frame([azure_chunk("ok")])]
    obs = observe(pieces, max_event_bytes=1000)
    assert (obs.oversized_events, obs.output_deltas, obs.events) == (1, 1, 1)


def test_events_after_done_are_not_interpreted() -> None:
    obs = observe([*frame([azure_chunk("a"), b"[DONE]", azure_chunk("b")]), b"data: {}\n\n"])
    assert (obs.done, obs.output_deltas, obs.events) == (True, 1, 4)


def test_named_error_event_and_codes() -> None:
    obs = observe([b'event: error\ndata: {"error":{"message":"boom","code":"x"}}\n\n'])
    assert obs.error_code == "x"
    obs = observe([b'data: {"error":{"message":"boom","code":429}}\n\n'])
    assert obs.error_code == "429"
    obs = observe([b'data: {"error":"bad"}\n\n'])
    assert obs.error_code == "error"


# --- content filter details ------------------------------------------------------------------


def choice_chunk(index: int, **choice: Any) -> bytes:
    return json.dumps({"id": "", "choices": [{"index": index, **choice}]}).encode()


def test_content_filter_finish_without_flagged_category_is_other() -> None:
    obs = observe(
        frame(
            [
                choice_chunk(0, delta={"content": "a"}),
                choice_chunk(1, delta={"content": "b"}),
                choice_chunk(0, delta={}, finish_reason="content_filter"),
                choice_chunk(
                    1,
                    finish_reason="content_filter",
                    content_filter_results={
                        "custom_blocklists": [{"filtered": True, "id": "x"}],
                        "made_up": {"filtered": True},
                        "hate": {"filtered": False, "severity": "low"},
                        "error": {"code": "content_filter_error", "filtered": True},
                    },
                ),
            ]
        )
    )
    assert content_filter_events(obs) == [
        ("completion", "other"),
        ("completion", "custom_blocklists"),
        ("completion", "other"),
    ]
    assert obs.filter_categories == {"completion": {"custom_blocklists", "other"}}


def test_content_filter_sticks_over_a_later_reason_and_categories_accumulate() -> None:
    obs = observe(
        frame(
            [
                choice_chunk(0, delta={"content": "a"}, finish_reason="stop"),
                choice_chunk(
                    0,
                    finish_reason="content_filter",
                    content_filter_result={"sexual": {"filtered": True, "severity": "high"}},
                ),
                choice_chunk(
                    0,
                    finish_reason="stop",
                    content_filter_results={
                        "custom_blocklists": {"filtered": False, "details": [{"filtered": True}]}
                    },
                ),
            ]
        )
    )
    assert obs.finish_reasons == {0: "content_filter"}
    assert content_filter_events(obs) == [
        ("completion", "custom_blocklists"),
        ("completion", "sexual"),
    ]


def test_prompt_annotations_are_recorded_but_are_not_block_events() -> None:
    annotated = {
        "prompt_annotations": [
            {"prompt_index": 0, "content_filter_results": {"jailbreak": {"filtered": True}}}
        ],
        "choices": [],
    }
    obs = observe(frame([json.dumps(annotated).encode()]))
    assert obs.filter_categories == {"prompt": {"jailbreak"}}
    assert content_filter_events(obs) == []


# --- non-stream bodies -----------------------------------------------------------------------

# docs/chat-wire.md §11 (non-stream body), a real capture.
COMPLETION_BODY = (
    b'{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},'
    b'"protected_material_code":{"filtered":false,"detected":false},"protected_material_text":'
    b'{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},'
    b'"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":'
    b'"safe"}},"finish_reason":"stop","index":0,"logprobs":null,"message":{"annotations":[],'
    b'"content":"4200 + 42 equals 4242.","refusal":null,"role":"assistant"}}],"created":'
    b'1762402675,"id":"chatcmpl-CYljXG7URhfUajUrf04DzDMUn59Fm","model":"gpt-4o-mini-2024-07-18",'
    b'"object":"chat.completion","prompt_filter_results":[{"prompt_index":0,'
    b'"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":'
    b'{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},'
    b'"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":'
    b'"safe"}}}],"system_fingerprint":"fp_efad92c60b","usage":{"completion_tokens":11,'
    b'"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,'
    b'"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":16,'
    b'"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":27}}\n'
)

# docs/chat-wire.md §8.1 (prompt blocked), a real capture.
PROMPT_FILTER_BODY = (
    b'{"error":{"message":"The response was filtered due to the prompt triggering Azure '
    b"OpenAI's content management policy. Please modify your prompt and retry. To learn more "
    b"about our content filtering policies please read our documentation: "
    b'https://go.microsoft.com/fwlink/?linkid=2198766","type":null,"param":"prompt","code":'
    b'"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation",'
    b'"content_filter_result":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":'
    b'{"filtered":false,"detected":false},"self_harm":{"filtered":true,"severity":"medium"},'
    b'"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":'
    b'"safe"}}}}}'
)

COMPLETION_OBSERVATION = Observation(
    output_deltas=1,
    finish_reasons={0: "stop"},
    choices_seen={0},
    usage=Usage(prompt_tokens=16, completion_tokens=11),
    events=1,
)


def test_observe_completion_body() -> None:
    assert observe_json(COMPLETION_BODY) == COMPLETION_OBSERVATION


def test_observe_prompt_filter_400() -> None:
    obs = observe_json(PROMPT_FILTER_BODY)
    assert obs.error_code == "content_filter"
    assert obs.filter_categories == {"prompt": {"self_harm"}}
    assert content_filter_events(obs) == [("prompt", "self_harm")]


def test_observe_content_filter_400_without_flagged_category() -> None:
    obs = observe_json(b'{"error":{"code":"content_filter","message":"filtered"}}')
    assert content_filter_events(obs) == [("prompt", "other")]
    jailbreak = observe_json(
        b'{"error":{"code":"content_filter","inner_error":{"content_filter_results":'
        b'{"jailbreak":{"detected":true,"filtered":true}}}}}'
    )
    assert content_filter_events(jailbreak) == [("prompt", "jailbreak")]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b, wbits=-zlib.MAX_WBITS)),
        ("identity", lambda b: b),
        ("gzip, deflate", lambda b: zlib.compress(gzip.compress(b))),
        (" GZIP ", gzip.compress),
    ],
)
def test_observe_compressed_body(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    assert observe_json(compress(COMPLETION_BODY), encoding) == COMPLETION_OBSERVATION


def test_observe_embeddings_usage() -> None:
    body = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AAAA"}],'
    body += b'"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}'
    assert observe_json(body).usage == Usage(prompt_tokens=8)


def test_chat_semantics_do_not_read_responses_usage() -> None:
    # A stored Response fetched on an `other` path must not count its tokens a second time.
    body = b'{"object":"response","usage":{"input_tokens":36,"output_tokens":87}}'
    assert observe_json(body).usage == Usage()


def test_usage_details_may_be_missing_or_null() -> None:
    body = b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,'
    body += b'"prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":null}}}'
    assert observe_json(body).usage == Usage(prompt_tokens=5, completion_tokens=7)
    assert observe_json(b'{"choices":[],"usage":null}').usage is None


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"\x00\xff garbage", None),
        (b"", None),
        (b"[]", None),
        (b"<html>502 Bad Gateway</html>", None),
        (COMPLETION_BODY, "br"),
        (b"not gzip", "gzip"),
        (gzip.compress(COMPLETION_BODY)[:-12], "gzip"),  # truncated
    ],
)
def test_observe_garbage_bodies(body: bytes, encoding: str | None) -> None:
    obs = observe_json(body, encoding)
    assert obs.parse_errors == 1
    assert obs.usage is None


def test_observe_rate_limit_body() -> None:
    obs = observe_json(b'{"error":{"code":"429","message":"Requests to the ... exceeded"}}')
    assert (obs.error_code, content_filter_events(obs)) == ("429", [])


def test_bodies_over_the_limit_are_not_parsed() -> None:
    assert observe_json(COMPLETION_BODY, max_bytes=100).oversized_events == 1
    bomb = gzip.compress(b'{"a":"' + b"x" * 5_000_000 + b'"}')
    obs = observe_json(bomb, "gzip", max_bytes=1 << 20)
    assert (obs.oversized_events, obs.parse_errors, obs.events) == (1, 0, 0)


def whole_event_pieces(data: bytes, per_piece: int, **framer_args: Any) -> list[bytes]:
    """`data` cut only between events (after each blank line that ends one), `per_piece`
    events to a piece: the pieces a busy stream's reads bring, walked without the framer."""
    from proxy.observe.framing import Framer

    ends = [end for _, _, end in Framer(**framer_args).feed(data).spans]
    return split_at(data, ends[per_piece - 1 : -1 : per_piece])


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
def test_same_observation_for_pieces_of_whole_events(path: Path) -> None:
    data = path.read_bytes()
    expected = untimed(observe([data]))
    for per_piece in (1, 2, 3, 7):
        assert untimed(observe(whole_event_pieces(data, per_piece))) == expected, per_piece


def test_walked_pieces_hand_any_odd_event_to_the_framer() -> None:
    # Steady content chunks, then in the same piece an event each of the framer's cases:
    # blank lines before it, a "\r\n" line end, two data lines, a content chunk over the
    # size limit (which its template would match).
    head = stream("azure-default-gpt-4o-mini.sse").split(b"\n\n")
    content = [e + b"\n\n" for e in head if b'"content":"' in e][:6]
    odd = [b"\n\n" + content[1], content[2].replace(b"\n\n", b"\r\n\r\n"),
           content[3].replace(b"data: {", b"data: {\ndata: ", 1),
           content[3].replace(b'"content":"', b'"content":"' + b"y" * 3000, 1), content[4]]
    for tail in odd:
        pieces = [*content[:2], b"".join(content[2:5]) + tail + content[5]]
        expected = untimed(observe([b"".join(pieces)], max_event_bytes=2048))
        assert untimed(observe(pieces, max_event_bytes=2048)) == expected, tail[:20]
