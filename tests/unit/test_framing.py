"""Framer: the same event spans for any split, bounded state, lines ending any way."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.observe.framing import Framer
from tests.unit.test_sse import _line, joined, split_at


def spans(pieces: Iterable[bytes], max_event_bytes: int = 1 << 20) -> list[bytes]:
    """Each framed event's bytes (start to end of its blank line, with a `lead` byte that
    completes it), and then all the bytes settled."""
    framer = Framer(max_event_bytes)
    events: list[bytes] = []
    settled = b""
    for piece in pieces:
        frames = framer.feed(piece)
        if frames.lead:  # the "\n" of the "\r\n" that ended the last event
            events[-1] += frames.data[:1]
        assert len(framer._held) <= max_event_bytes + 2  # the bound is the point
        events += [frames.data[start:end] for start, _, end in frames.spans]
        settled += frames.data[: frames.settled]
    return events + [settled]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_line, st.sampled_from([b"\n", b"\r\n", b"\r"])), max_size=30),
    st.lists(st.integers(min_value=0, max_value=1 << 12), max_size=12),
    st.booleans(),
    st.integers(min_value=0, max_value=60),
)
def test_the_same_spans_for_any_split(lines: list[tuple[bytes, bytes]], cuts: list[int],
                                      bom: bool, max_event_bytes: int) -> None:
    stream = joined(lines, bom)
    whole = spans([stream], max_event_bytes)
    assert spans(split_at(stream, cuts), max_event_bytes) == whole
    # Everything settled is a prefix of the stream: nothing lost, reordered or repeated.
    assert stream.startswith(whole[-1])


def test_a_crlf_split_after_an_event_is_reported_as_its_lead() -> None:
    framer = Framer()
    first = framer.feed(b"data: a\r\n\r")
    assert first.spans == [(0, 7, 10)]
    second = framer.feed(b"\ndata: b\r\n\r\n")
    assert second.lead and second.spans == [(1, 8, 12)]


def test_an_oversized_event_is_let_go_as_soon_as_it_cannot_fit() -> None:
    framer = Framer(max_event_bytes=10)
    assert framer.feed(b"data: 1234").settled == 0  # exactly 10: may still end here
    frames = framer.feed(b"5")
    assert (frames.settled, framer.oversized, framer._held) == (len(frames.data), 1, b"")
    frames = framer.feed(b"\n\ndata: ok\n\n")
    assert [frames.data[s:e] for s, _, e in frames.spans] == [b"data: ok\n\n"]
