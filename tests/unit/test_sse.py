"""SSEDecoder and UsageChunkStripper: framing must not depend on how the bytes were split."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.observe.sse import SSEDecoder, SSEEvent, UsageChunkStripper

STREAMS = sorted((Path(__file__).parent.parent / "data" / "streams").glob("*.sse"))
STREAM_IDS = [path.name for path in STREAMS]


def reference_events(stream: bytes) -> list[SSEEvent]:
    """The WHATWG algorithm written the obvious way, over the whole stream at once."""
    stream = stream.removeprefix(b"\xef\xbb\xbf")
    lines = re.split(rb"\r\n|\r|\n", stream)
    lines.pop()  # the text after the last line break is not a complete line: never dispatched
    events: list[SSEEvent] = []
    data: list[bytes] | None = None
    name: str | None = None
    for line in lines:
        if not line:
            if data is not None:
                events.append(SSEEvent(b"\n".join(data), name))
            data, name = None, None
        elif not line.startswith(b":"):
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"data":
                data = (data or []) + [value]
            elif field == b"event":
                name = value.decode() or None
    return events


def decode(pieces: Iterable[bytes], max_event_bytes: int = 1 << 20) -> list[SSEEvent]:
    decoder = SSEDecoder(max_event_bytes)
    events = [event for piece in pieces for event in decoder.feed(piece)]
    assert decoder.flush() == []
    return events


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """`data` cut at `cuts`, each taken modulo `len(data) + 1`: any integer drawn is a cut."""
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def joined(lines: Iterable[tuple[bytes, bytes]], bom: bool) -> bytes:
    """Lines with their own line endings, after a UTF-8 BOM if `bom`."""
    return (b"\xef\xbb\xbf" if bom else b"") + b"".join(line + eol for line, eol in lines)


def strip(pieces: Iterable[bytes]) -> bytes:
    stripper = UsageChunkStripper()
    return b"".join(stripper.feed(piece) for piece in pieces) + stripper.flush()


# --- decoder -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", STREAMS, ids=STREAM_IDS)
def test_recorded_stream_split_at_every_offset(path: Path) -> None:
    stream = path.read_bytes()
    expected = reference_events(stream)
    assert expected, "a recorded stream has events"
    assert decode([stream]) == expected
    assert decode(stream[i : i + 1] for i in range(len(stream))) == expected
    for cut in range(1, len(stream)):
        assert decode([stream[:cut], stream[cut:]]) == expected, cut


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(STREAMS),
    st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40),
)
def test_recorded_stream_random_splits(path: Path, cuts: list[int]) -> None:
    stream = path.read_bytes()
    pieces = split_at(stream, cuts)
    assert decode(pieces) == reference_events(stream)


_line = st.one_of(
    st.builds(lambda v: b"data:" + v, st.sampled_from([b"", b" ", b" x", b"  y", b'{"a":1}'])),
    st.builds(lambda v: b"event:" + v, st.sampled_from([b" message", b"done", b""])),
    st.sampled_from([b": comment", b":", b"id: 7", b"retry: 10", b"data", b"unknown: z"]),
    st.just("data: h\u00e9llo \u2713 \U0001f600".encode()),
    st.just(b""),  # a blank line: dispatch
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_line, st.sampled_from([b"\n", b"\r\n", b"\r"])), max_size=30),
    st.lists(st.integers(min_value=0, max_value=1 << 12), max_size=20),
    st.booleans(),
)
def test_any_stream_any_split_matches_reference(
    lines: list[tuple[bytes, bytes]], cuts: list[int], bom: bool
) -> None:
    stream = joined(lines, bom)
    pieces = split_at(stream, cuts)
    assert decode(pieces) == reference_events(stream)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    stream = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    expected = [SSEEvent(b"a\nb"), SSEEvent(b"c")]
    for cut in range(len(stream) + 1):
        assert decode([stream[:cut], stream[cut:]]) == expected


def test_crlf_pair_split_is_one_line_break() -> None:
    # "\r" ends one piece and "\n" opens the next: one line break, not a blank line.
    assert decode([b"data: a\r", b"\ndata: b\r\n\r\n"]) == [SSEEvent(b"a\nb")]
    assert decode([b"data: a\r", b"\n", b"\r", b"\n"]) == [SSEEvent(b"a")]


def test_comments_names_and_fields() -> None:
    stream = (
        b": keepalive\n\n"
        b'event: error\ndata: {"error":{}}\n\n'
        b"id: 1\nretry: 5\ndata:no-space\ndata:  two spaces\n\n"
        b"event: lonely\n\n"  # no data line: nothing is dispatched
        b"data:\n\n"  # an empty data line still dispatches
        b"data\n\n"  # a field name alone is a data line with an empty value
    )
    assert decode([stream]) == [
        SSEEvent(b'{"error":{}}', "error"),
        SSEEvent(b"no-space\n two spaces"),
        SSEEvent(b""),
        SSEEvent(b""),
    ]


def test_extra_blank_lines_dispatch_nothing() -> None:
    assert decode([b"\n\n\ndata: a\n\n\n\n\ndata: b\n\n\n"]) == [SSEEvent(b"a"), SSEEvent(b"b")]


def test_utf8_character_split_across_pieces() -> None:
    text = "h\u00e9llo\u2713 \U0001f600"
    stream = f"data: {text}\n\n".encode()
    for cut in range(len(stream) + 1):
        (event,) = decode([stream[:cut], stream[cut:]])
        assert event.data.decode() == text


def test_bom_is_dropped_even_when_split() -> None:
    stream = b"\xef\xbb\xbfdata: a\n\n"
    for cut in range(len(stream) + 1):
        assert decode([stream[:cut], stream[cut:]]) == [SSEEvent(b"a")]
    # Two bytes of a BOM and then something else: not a BOM, so the line is not a data line.
    assert decode([b"\xef", b"\xbb", b"data: a\n\n"]) == []


def test_unterminated_last_event_is_not_dispatched() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [SSEEvent(b"a")]
    assert decoder.flush() == []
    assert decoder.idle is False  # fresh again: a reused decoder treats a BOM as stream start
    assert decoder.feed(b"data: c\n\n") == [SSEEvent(b"c")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_oversized_event_is_skipped_and_the_next_one_decoded(eol: bytes) -> None:
    big = b"data: " + b"x" * 100 + eol + b"data: " + b"y" * 100 + eol + eol
    stream = b"data: a" + eol + eol + big + b"data: b" + eol + eol + big + b"data: c" + eol + eol
    expected = [SSEEvent(b"a"), SSEEvent(b"b"), SSEEvent(b"c")]
    for pieces in (
        [stream],
        [stream[i : i + 1] for i in range(len(stream))],
        *([stream[:cut], stream[cut:]] for cut in range(len(stream) + 1)),
    ):
        decoder = SSEDecoder(max_event_bytes=64)
        events = [event for piece in pieces for event in decoder.feed(piece)]
        assert events == expected
        assert decoder.oversized == 2


def test_oversized_state_is_bounded() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    for _ in range(1000):
        assert decoder.feed(b"data: " + b"z" * 500) == []
    assert len(decoder._buf) <= 1000  # the bound is the point of this test
    assert decoder.feed(b"\n\ndata: ok\n\n") == [SSEEvent(b"ok")]
    assert decoder.oversized == 1


def test_event_exactly_at_the_limit_is_kept() -> None:
    event = b"data: " + b"x" * 58  # 64 bytes before its blank line
    assert decode([event + b"\n\n"], max_event_bytes=64) == [SSEEvent(b"x" * 58)]
    assert decode([event + b"x\n\n"], max_event_bytes=64) == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_line, st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"])), max_size=30),
    st.lists(st.integers(min_value=0, max_value=1 << 12), max_size=6),
    st.booleans(),
)
def test_pending_end_finishes_exactly_the_held_event(
    lines: list[tuple[bytes, bytes]], cuts: list[int], bom: bool
) -> None:
    stream = joined(lines, bom)
    decoder = SSEDecoder(max_event_bytes=40)
    events: list[SSEEvent] = []
    for piece in split_at(stream, cuts):
        end = decoder.pending_end(piece)
        if end > 0:
            held = decoder.feed(piece[:end])
            assert decoder.idle
            assert len(held) <= 1  # just the event that was held, if it had a data line
            events += held
            piece = piece[end:]
        elif end == 0:
            assert decoder.idle
        events += decoder.feed(piece)
    assert events == decode([stream], max_event_bytes=40)


def test_pending_end_cases() -> None:
    decoder = SSEDecoder()
    assert decoder.pending_end(b"data: a\n\n") == -1  # stream start: a BOM may be pending
    assert decoder.feed(b"data: a\n\ndata: b") == [SSEEvent(b"a")]
    assert decoder.pending_end(b"c\ndata: d\n\ndata: e\n\n") == 11
    assert decoder.pending_end(b"c\ndata: d\n") == -1
    assert decoder.pending_end(b"c\r\n\r\n") == -1  # a "\r" first: not the simple case
    assert decoder.feed(b"\n") == []
    assert decoder.pending_end(b"\ndata: x\n\n") == 1  # the blank line straddles the pieces
    assert decoder.feed(b"\n") == [SSEEvent(b"b")]
    assert decoder.idle
    assert decoder.pending_end(b"data: x\n\n") == 0



# --- UsageChunkStripper --------------------------------------------------------------------


def usage_event_bounds(stream: bytes) -> tuple[int, int]:
    """Offsets of the one usage-only event in a "\\n"-terminated recorded stream."""
    start = 0
    for event in stream.split(b"\n\n"):
        end = start + len(event) + 2
        payload = event.removeprefix(b"data: ")
        if payload.startswith(b"{") and b'"usage":{' in payload:
            obj = json.loads(payload)
            if obj["choices"] == []:
                return start, end
        start = end
    raise AssertionError("no usage event")


# Chat streams with the include_usage chunk (a Responses stream's usage is on its terminal event).
USAGE_STREAMS = [p for p in STREAMS
                 if b'"usage":{' in p.read_bytes() and not p.name.startswith("responses-")]


@pytest.mark.parametrize("path", USAGE_STREAMS, ids=[p.name for p in USAGE_STREAMS])
def test_stripper_removes_exactly_the_usage_event_for_any_split(path: Path) -> None:
    stream = path.read_bytes()
    start, end = usage_event_bounds(stream)
    expected = stream[:start] + stream[end:]
    assert strip([stream]) == expected
    assert strip(stream[i : i + 1] for i in range(len(stream))) == expected
    for cut in range(len(stream) + 1):
        assert strip([stream[:cut], stream[cut:]]) == expected, cut


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_stripper_with_other_line_endings(eol: bytes) -> None:
    path = next(p for p in USAGE_STREAMS if "include-usage" in p.name)
    events = path.read_bytes().split(b"\n\n")[:-1]
    usage = next(i for i, e in enumerate(events) if b'"choices":[],"created":1' in e)
    stream = b"".join(e + eol + eol for e in events)
    expected = b"".join(e + eol + eol for i, e in enumerate(events) if i != usage)
    for cut in range(len(stream) + 1):
        assert strip([stream[:cut], stream[cut:]]) == expected, cut
    assert strip(stream[i : i + 1] for i in range(len(stream))) == expected


NO_USAGE_STREAMS = [p for p in STREAMS if p not in USAGE_STREAMS]


@pytest.mark.parametrize("path", NO_USAGE_STREAMS, ids=[p.name for p in NO_USAGE_STREAMS])
def test_stripper_passes_streams_without_usage_chunk(path: Path) -> None:
    stream = path.read_bytes()
    assert strip([stream]) == stream
    for cut in range(0, len(stream) + 1, 7):
        assert strip([stream[:cut], stream[cut:]]) == stream


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(USAGE_STREAMS),
    st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40),
)
def test_stripper_random_splits(path: Path, cuts: list[int]) -> None:
    stream = path.read_bytes()
    start, end = usage_event_bounds(stream)
    pieces = split_at(stream, cuts)
    assert strip(pieces) == stream[:start] + stream[end:]


def test_stripper_sends_complete_events_at_once_and_holds_only_the_tail() -> None:
    stripper = UsageChunkStripper()
    assert stripper.feed(b'data: {}\n\ndata: {"cho') == b"data: {}\n\n"
    assert stripper.feed(b'ices":[]}\n\n: c\n\n') == b'data: {"choices":[]}\n\n: c\n\n'
    assert stripper.feed(b"data: [DONE]\n") == b""
    assert stripper.flush() == b"data: [DONE]\n"


def test_stripper_keeps_prompt_annotation_and_look_alikes() -> None:
    keep = [
        b'data: {"choices":[],"id":"","prompt_filter_results":[]}\n\n',  # choices [] but no usage
        b'data: {"choices":[],"usage":null}\n\n',
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
    expected = b"".join(events)
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
    chunk = b'data: {"choices":[{"delta":{"content":"a"},"index":0}],"usage":null}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n'
    assert strip([chunk + odd + chunk + usage + chunk]) == chunk + odd + chunk + chunk
    assert strip([odd + chunk + odd]) == odd + chunk + odd


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
    stripper = UsageChunkStripper()
    assert stripper.feed(b"data: a\r\n\r\n" + usage + b"\r\n\r") == b"data: a\r\n\r\n"
    assert stripper.feed(b"\n") == b""
    assert stripper.feed(b"data: b\r\n\r\n") == b"data: b\r\n\r\n"
    stripper = UsageChunkStripper()
    assert stripper.feed(b"data: a\r\n\r") == b"data: a\r\n\r"
    assert stripper.feed(b"") == b""
    assert stripper.feed(b"\n" + usage + b"\r\n\r\n") == b"\n"


def test_stripper_fails_open_on_an_oversized_event() -> None:
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n'
    stripper = UsageChunkStripper(max_event_bytes=100)
    out = stripper.feed(usage + b"data: " + b"x" * 80)
    assert out == b""  # tail still within the limit: held
    out += stripper.feed(b"y" * 40)
    assert stripper.passthrough
    assert out == b"data: " + b"x" * 80 + b"y" * 40
    assert stripper.feed(b"\n\n" + usage) == b"\n\n" + usage
    assert stripper.flush() == b""
