"""SSEDecoder: the events must not depend on how the bytes were split."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.observe.sse import SSEDecoder, SSEEvent

STREAMS = sorted((Path(__file__).parent.parent / "data" / "streams").glob("*.sse"))
STREAM_IDS = [path.name for path in STREAMS]


_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n)")


def reference_events(stream: bytes, max_event_bytes: int = 1 << 20) -> list[SSEEvent]:
    """The WHATWG algorithm written the obvious way, over the whole stream at once. An event
    is skipped when the bytes from its first line's start to its last line's end (the line
    breaks between its lines included) are more than `max_event_bytes`."""
    stream = stream.removeprefix(b"\xef\xbb\xbf")
    events: list[SSEEvent] = []
    data: list[bytes] | None = None
    name: str | None = None
    first = last = -1  # where the event's first line starts, where its last line ends
    # The text after the last line break is not a complete line: never dispatched.
    for match in _LINE.finditer(stream):
        line = match.group(1)
        if not line:
            if data is not None and last - first <= max_event_bytes:
                events.append(SSEEvent(b"\n".join(data), name))
            data, name, first = None, None, -1
            continue
        if first < 0:
            first = match.start()
        last = match.end(1)
        if not line.startswith(b":"):
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
    decoder.close()
    return events


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """`data` cut at `cuts`, each taken modulo `len(data) + 1`: any integer drawn is a cut."""
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def joined(lines: Iterable[tuple[bytes, bytes]], bom: bool) -> bytes:
    """Lines with their own line endings, after a UTF-8 BOM if `bom`."""
    return (b"\xef\xbb\xbf" if bom else b"") + b"".join(line + eol for line, eol in lines)


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
    decoder.close()
    assert decoder.idle is False  # fresh again: a reused decoder treats a BOM as stream start
    assert decoder.feed(b"\xef\xbb\xbfdata: c\n\n") == [SSEEvent(b"c")]


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
    assert len(decoder._framer._held) <= 1000 + 2  # the bound is the point of this test
    assert decoder.feed(b"\n\ndata: ok\n\n") == [SSEEvent(b"ok")]
    assert decoder.oversized == 1


def test_event_exactly_at_the_limit_is_kept() -> None:
    event = b"data: " + b"x" * 58  # 64 bytes before its blank line
    assert decode([event + b"\n\n"], max_event_bytes=64) == [SSEEvent(b"x" * 58)]
    assert decode([event + b"x\n\n"], max_event_bytes=64) == []


def test_the_size_limit_counts_the_event_not_the_blank_lines_before_it() -> None:
    """Blank lines before an event of exactly the limit: kept, whole or cut anywhere."""
    for blank in (b"\n", b"\n\n\n", b"\r\n\r", b"\r\r\n\n"):
        stream = blank + b"data: " + b"x" * 34 + b"\n\n"
        for cut in range(len(stream) + 1):
            assert decode([stream[:cut], stream[cut:]], max_event_bytes=40) == [
                SSEEvent(b"x" * 34)], (blank, cut)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_line, st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"])), max_size=30),
    st.lists(st.integers(min_value=0, max_value=1 << 12), max_size=6),
    st.booleans(),
    st.integers(min_value=0, max_value=50),
)
# The review's example: leading blank lines and an event of exactly the limit, cut at byte 3,
# was delivered when split and dropped as oversized when whole.
@example(lines=[(b"", b"\n")] * 3 + [(b"data: " + b"y" * 34, b"\n"), (b"", b"\n")],
         cuts=[3], bom=False, max_event_bytes=40)
def test_any_stream_any_split_with_a_size_limit_matches_reference(
    lines: list[tuple[bytes, bytes]], cuts: list[int], bom: bool, max_event_bytes: int
) -> None:
    stream = joined(lines, bom)
    expected = reference_events(stream, max_event_bytes)
    assert decode([stream], max_event_bytes) == expected
    assert decode(split_at(stream, cuts), max_event_bytes) == expected
