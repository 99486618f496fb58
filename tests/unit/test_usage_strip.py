"""UsageStripper: what injecting include_usage caused is removed, and nothing else, for any split."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.relay.usage_strip import UsageStripper
from tests.unit.test_sse import STREAMS, split_at

STREAM_DIR = Path(__file__).parent.parent / "data" / "streams"
WITHOUT = (STREAM_DIR / "azure-default-gpt-4o-mini.sse").read_bytes()
"""A stream as Azure sends it when the request does not ask for usage..."""
WITH = (STREAM_DIR / "azure-default-gpt-4o-mini-include-usage.sse").read_bytes()
"""...and the same stream when it does: `,"usage":null` on every chunk but the prompt
annotation, and the usage chunk before [DONE]."""


def strip(pieces: Iterable[bytes], max_event_bytes: int = 1 << 20) -> bytes:
    stripper = UsageStripper(max_event_bytes)
    return b"".join(stripper.feed(piece) for piece in pieces) + stripper.flush()


def without_injection(stream: bytes) -> bytes:
    """The reference, for a "\\n"-framed stream of one-line events: each event without its
    `,"usage":null` before the closing brace, and without the usage-only chunk."""
    out = []
    for event in stream.split(b"\n\n")[:-1]:
        payload = event.removeprefix(b"data: ")
        if payload.startswith(b"{"):
            obj = json.loads(payload)
            if obj.get("choices") == [] and isinstance(obj.get("usage"), dict):
                continue
            event = event.removesuffix(b',"usage":null}') + b"}" if event.endswith(
                b',"usage":null}') else event
        out.append(event + b"\n\n")
    return b"".join(out)


# --- injection leaves no trace --------------------------------------------------------------


def test_the_recorded_pair_differs_as_the_wire_notes_say() -> None:
    assert WITH != WITHOUT
    assert without_injection(WITH) == WITHOUT
    assert WITH.count(b',"usage":null}') == WITHOUT.count(b"\n\n") - 2  # not annotation, [DONE]


def test_an_injected_stream_reaches_the_client_as_without_injection_for_any_split() -> None:
    assert strip([WITH]) == WITHOUT
    assert strip(WITH[i : i + 1] for i in range(len(WITH))) == WITHOUT
    for cut in range(len(WITH) + 1):
        assert strip([WITH[:cut], WITH[cut:]]) == WITHOUT, cut


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_an_injected_stream_with_other_line_endings(eol: bytes) -> None:
    def framed(stream: bytes) -> bytes:
        return b"".join(e + eol + eol for e in stream.split(b"\n\n")[:-1])

    stream, expected = framed(WITH), framed(WITHOUT)
    for cut in range(len(stream) + 1):
        assert strip([stream[:cut], stream[cut:]]) == expected, cut
    assert strip(stream[i : i + 1] for i in range(len(stream))) == expected


INJECTED = [p for p in STREAMS if b',"usage":null}' in p.read_bytes() and b"\r" not in p.read_bytes()]


@pytest.mark.parametrize("path", INJECTED, ids=[p.name for p in INJECTED])
def test_every_recorded_injected_stream_loses_exactly_the_injections_trace(path: Path) -> None:
    stream = path.read_bytes()
    expected = without_injection(stream)
    assert b'"usage":null' not in expected
    assert strip([stream]) == expected
    for cut in range(len(stream) + 1):
        assert strip([stream[:cut], stream[cut:]]) == expected, cut


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([*INJECTED, *STREAMS]),
    st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40),
)
def test_random_splits(path: Path, cuts: list[int]) -> None:
    stream = path.read_bytes()
    expected = strip([stream])
    assert strip(split_at(stream, cuts)) == expected
    if b"\r" not in stream:
        assert expected == without_injection(stream)


def test_usage_null_is_removed_only_as_the_last_member_of_a_data_line() -> None:
    keep = [
        b'data: {"choices":[{"delta":{"content":",\\"usage\\":null}"}}]}\n\n',  # in a string
        b'data: {"a":{"b":1,"usage":null}}\n\n',  # nested: not the injection's member
        b'data: {"usage":null,"a":1}\n\n',  # not last
        b'data: {"a":1, "usage": null}\n\n',  # not Azure's bytes
        b'event: x\ndata: {}\n: ,"usage":null}\n\n',  # a comment line
        b'data: [1,"usage":null}\n\n',  # not an object
        b': ,"usage":null}\n\n',
    ]
    stream = b"".join(keep)
    assert strip([stream]) == stream
    assert strip([b'data:{"a":1,"usage":null}\n\n']) == b'data:{"a":1}\n\n'
    assert strip([b'data: {"a":\ndata: 1,"usage":null}\n\n']) == b'data: {"a":\ndata: 1}\n\n'


# --- the usage chunk -------------------------------------------------------------------------



NO_USAGE_STREAMS = [p for p in STREAMS if b'"usage"' not in p.read_bytes()]


@pytest.mark.parametrize("path", NO_USAGE_STREAMS, ids=[p.name for p in NO_USAGE_STREAMS])
def test_streams_without_a_trace_of_injection_pass_unchanged(path: Path) -> None:
    stream = path.read_bytes()
    assert strip([stream]) == stream
    for cut in range(0, len(stream) + 1, 7):
        assert strip([stream[:cut], stream[cut:]]) == stream


def test_stripper_sends_complete_events_at_once_and_holds_only_the_tail() -> None:
    stripper = UsageStripper()
    assert stripper.feed(b'data: {}\n\ndata: {"cho') == b"data: {}\n\n"
    assert stripper.feed(b'ices":[]}\n\n: c\n\n') == b'data: {"choices":[]}\n\n: c\n\n'
    assert stripper.feed(b"data: [DONE]\n") == b""
    assert stripper.flush() == b"data: [DONE]\n"


def test_stripper_keeps_prompt_annotation_and_look_alikes() -> None:
    keep = [
        b'data: {"choices":[],"id":"","prompt_filter_results":[]}\n\n',  # choices [] but no usage
        b'data: {"choices":[],"usage":null,"x":1}\n\n',
        b'data: {"choices":[{"index":0}],"usage":{"prompt_tokens":1}}\n\n',  # has a choice
        b'data: {"choices":[],"usage":{"prompt_tokens":1}\n\n',  # not JSON: not ours to judge
        b'data: {"content":"\\"usage\\":{"}\n\n',
        b": a comment\n\n",
    ]
    stream = b"".join(keep)
    assert strip([stream]) == stream


def test_stripper_on_pieces_of_many_events() -> None:
    # include_usage puts `"usage":null` on every chunk; the usage-only chunk may sit anywhere
    # in a piece of many events, cut anywhere.
    chunk = b'data: {"choices":[{"delta":{"content":"%d"},"index":0}],"usage":null}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n'
    events = [chunk % i for i in range(12)]
    stream = b"".join([*events[:7], usage, *events[7:]])
    expected = b"".join(e.replace(b',"usage":null}', b"}") for e in events)
    for size in (1, 3, 5, 13):
        for shift in (-3, 0, 7):
            cuts = [min(max(i * len(events[0]) + shift, 0), len(stream))
                    for i in range(size, len(events) + 1, size)]
            assert strip(split_at(stream, cuts)) == expected, (size, shift)
    for cut in range(len(stream) + 1):
        assert strip([stream[:cut], stream[cut:]]) == expected, cut


@pytest.mark.parametrize(
    "odd",
    [
        b'data: "usage"usage":null\n\n',  # overlapping look-alikes: counted once, not twice
        b'data: "usage"usage":{}\n\n',
        b'data: x"usage"usage"usage":null}\n\n',
        b'data: {"usage":null,"u":"\\"usage\\":{"}\n\n',
    ],
)
def test_stripper_finds_the_usage_chunk_beside_look_alikes(odd: bytes) -> None:
    chunk = b'data: {"choices":[{"delta":{"content":"a"},"index":0}]}\n\n'
    injected = chunk.replace(b"]}", b'],"usage":null}')
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n'
    assert strip([injected + odd + injected + usage + chunk]) == chunk + odd + chunk + chunk
    assert strip([odd + injected + odd]) == odd + chunk + odd


def test_stripper_tolerates_whitespace_and_named_events() -> None:
    usage = b'event: x\ndata: {"choices": [],\ndata:  "usage" :\t{"prompt_tokens": 3}}\n\n'
    stream = b"data: a\n\n" + usage + b"data: [DONE]\n\n"
    assert strip([stream]) == b"data: a\n\ndata: [DONE]\n\n"


def test_stripper_keeps_blank_lines_before_a_dropped_event() -> None:
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n'
    for blank in (b"\n", b"\n\n", b"\n\n\n"):
        assert strip([b"data: a\n\n" + blank + usage]) == b"data: a\n\n" + blank
        crlf = blank.replace(b"\n", b"\r\n")
        assert strip([b"data: a\r\n\r\n" + crlf + usage.replace(b"\n", b"\r\n")]) == (
            b"data: a\r\n\r\n" + crlf
        )


def test_stripper_lone_cr_terminator_owes_its_lf() -> None:
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3}}'
    # The usage event ends "\r\r" at the end of a piece; the "\n" opening the next piece
    # completes its last "\r\n" and must go with it.
    stripper = UsageStripper()
    assert stripper.feed(b"data: a\r\n\r\n" + usage + b"\r\n\r") == b"data: a\r\n\r\n"
    assert stripper.feed(b"\n") == b""
    assert stripper.feed(b"data: b\r\n\r\n") == b"data: b\r\n\r\n"
    stripper = UsageStripper()
    assert stripper.feed(b"data: a\r\n\r") == b"data: a\r\n\r"
    assert stripper.feed(b"") == b""
    assert stripper.feed(b"\n" + usage + b"\r\n\r\n") == b"\n"


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_after_an_oversized_event_the_usage_chunk_is_still_removed(eol: bytes) -> None:
    """What the stripper removes never depends on what came before: an event over the size
    limit passes through as it arrives, and the injection's bytes after it are removed."""
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3}}' + eol + eol
    chunk = b'data: {"choices":[{"delta":{"content":"a"},"index":0}]}' + eol + eol
    injected = chunk.replace(b"]}", b'],"usage":null}')
    big = b"data: " + b"x" * 150 + eol + b"data: y" + eol + eol
    stream = injected + big + injected + usage + b"data: [DONE]" + eol + eol
    expected = chunk + big + chunk + b"data: [DONE]" + eol + eol
    for cut in range(len(stream) + 1):
        assert strip([stream[:cut], stream[cut:]], max_event_bytes=100) == expected, cut
    assert strip((stream[i : i + 1] for i in range(len(stream))), 100) == expected
    stripper = UsageStripper(max_event_bytes=100)
    # Held while it may still fit; let go (and not held again) once it cannot.
    assert stripper.feed(b"data: " + b"x" * 80) == b""
    assert stripper.feed(b"y" * 40) == b"data: " + b"x" * 80 + b"y" * 40
    assert stripper.feed(b"z") == b"z"
    assert stripper.feed(b"\n\n" + usage.replace(eol, b"\n")) == b"\n\n"
    assert stripper.flush() == b""


EVENTS = [
    [b'data: {"choices":[{"delta":{"content":"a"},"index":0}],"usage":null}'],
    [b'data: {"choices":[],"usage":{"prompt_tokens":3}}'],
    [b"event: e", b'data: {"choices":[],', b'data: "usage":{"prompt_tokens":3}}'],
    [b"data: " + b"x" * 120],  # over the limit of 100
    [b"data: " + b"x" * 60, b'data: {"choices":[],"usage":{"prompt_tokens":3}}'],  # over too
    [b": comment"],
    [],  # a stray blank line
    [b"data: [DONE]"],
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(EVENTS))), max_size=20),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(min_value=0, max_value=1 << 12), max_size=8),
)
@example(kinds=[3, 1], eol=b"\n", cuts=[])  # the usage chunk after an oversized event
def test_what_is_removed_depends_on_each_event_alone(
        kinds: list[int], eol: bytes, cuts: list[int]) -> None:
    """The stripped stream is each event stripped on its own, whatever came before it."""
    blocks = [b"".join(line + eol for line in EVENTS[kind]) + eol for kind in kinds]
    stream = b"".join(blocks)
    expected = b"".join(strip([block], max_event_bytes=100) for block in blocks)
    assert strip(split_at(stream, cuts), max_event_bytes=100) == expected
    assert strip([EVENTS[1][0] + eol + eol], max_event_bytes=100) == b""


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
def test_pieces_of_whole_events_strip_as_the_whole_stream(path: Path) -> None:
    # Cut only between events, several to a piece: the pieces the stripper walks itself,
    # handing the framer what follows the first event its inline rule does not settle.
    from proxy.observe.framing import Framer

    data = path.read_bytes()
    ends = [end for _, _, end in Framer().feed(data).spans]
    expected = strip([data])
    for per_piece in (1, 2, 3, 7):
        assert strip(split_at(data, ends[per_piece - 1 : -1 : per_piece])) == expected, per_piece


@pytest.mark.parametrize(
    "odd",
    [
        b"\n\n" + b'data: {"a":1,"usage":null}\n\n',  # blank lines before it
        b'data: {"a":1,"usage":null}\r\n\r\n',
        b'event: x\ndata: {"a":1,"usage":null}\n\n',  # its last line a data line
        b'data: {"choices":[],"usage":{"total_tokens":3}}\n\n',  # the usage chunk
        b'data: {"usage":null,"u":1}\n\n',
        b'data: {"b":' + b"1" * 200 + b',"usage":null}\n\n',  # over the limit
    ],
)
def test_walked_pieces_hand_any_odd_event_to_the_framer(odd: bytes) -> None:
    chunk = b'data: {"choices":[{"delta":{"content":"%d"},"index":0}],"usage":null}\n\n'
    events = [chunk % i for i in range(4)]
    stream = b"".join([*events[:2], odd, *events[2:]])
    expected = b"".join(strip([e], 128) for e in [*events[:2], odd, *events[2:]])
    assert strip([stream], 128) == expected
    assert strip([events[0], b"".join([events[1], odd, *events[2:]])], 128) == expected


_WALKED_EVENTS = [
    b'data: {"choices":[{"delta":{"content":"a"},"index":0}],"usage":null}\n\n',
    b'data: {"choices":[{"delta":{"content":"b\\n"},"index":0}],"usage":null}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n',  # the usage chunk
    b'data: [1,"usage":null}\n\n',  # its data no object: stays
    b'event: x\ndata: {"a":1,"usage":null}\n\n',  # two lines
    b'data: {"a":1}\ndata: {"b":2,"usage":null}\n\n',  # two data lines
    b'data: {"a":1,"usage":null}\n\n\n\n',  # blank lines after it
    b'data: {"a":"\\"usage\\":null}","usage":null}\n\n',  # the member's look-alike inside
    b"data: [DONE]\n\n",
    b'data: {"a":1,"usage":null}\n',  # unterminated: held
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(range(len(_WALKED_EVENTS))), min_size=1, max_size=12))
def test_a_piece_of_whole_events_after_the_first_strips_event_by_event(kinds: list[int]) -> None:
    """The pieces `feed` rewrites at once (from an idle framer) strip as each event alone."""
    primer = _WALKED_EVENTS[0]
    events = [_WALKED_EVENTS[kind] for kind in kinds]
    expected = strip([primer, *events])  # every event its own piece
    assert strip([primer, b"".join(events)]) == expected
    assert strip([primer + primer, b"".join(events)]) == strip([primer, primer, *events])
