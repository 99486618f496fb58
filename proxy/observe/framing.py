"""Where each server-sent event begins and ends in a byte stream: the one SSE framer.

Every reader of a stream frames it here: the decoder (`proxy.observe.sse`), the observers and
the usage stripper (`proxy.relay.usage_strip`). Framing follows the WHATWG "event stream"
rules: lines end in `\\n`, `\\r\\n` or `\\r`; a blank line ends an event; a UTF-8 BOM may open
the stream. The result never depends on how the stream was cut into pieces (a `\\r\\n` pair, a
BOM or a line may straddle two pieces), as docs/sse-framing.md explains.

An event is its lines up to the blank line that ends it. Its *size* is the bytes from the start
of its first line to the end of its last line, line breaks between its lines included, its own
last line break and the blank line not; blank lines before it are not part of it. An event over
`max_event_bytes` is skipped (counted in `oversized`) as soon as that is certain, so the framer
holds at most `max_event_bytes` + 2 bytes: its state is O(1) apart from that one incomplete
event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "Framer", "Frames", "Span"]

DEFAULT_MAX_EVENT_BYTES: Final = 1 << 20

BOM: Final = b"\xef\xbb\xbf"
_LF: Final = 0x0A
_CR: Final = 0x0D
_LINE_UNKNOWN: Final = -2  # `Framer._line` not worked out yet

Span = tuple[int, int, int]
"""(start, body_end, end) of one event in `Frames.data`: its first byte, the end of its last
line (before that line's break), and the end of the blank line that ends it."""


@dataclass(slots=True)
class Frames:
    """What one piece completed. `data` is the held start of an event followed by the piece."""

    data: bytes
    spans: list[Span]
    """Each complete event within the size limit, in order."""
    settled: int
    """`data[:settled]` is final: complete events, blank lines and BOM between them, and the
    bytes of skipped oversized events. `data[settled:]` is the incomplete event (or partial
    BOM) that the framer holds and puts in front of the next piece."""
    lead: bool = False
    """`data[0]` is the `\\n` of a `\\r\\n` whose `\\r` ended the last span of the previous
    piece: it belongs to that event's blank line."""


class Framer:
    """Frames an SSE byte stream piece by piece; see the module docstring."""

    __slots__ = ("_content_end", "_cr", "_cr_span", "_fresh", "_held", "_line", "_max",
                 "_named", "_skip_open", "_skipping", "oversized")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, *,
                 named: bool = False) -> None:
        """`named`: the stream's events are usually two lines, an `event:` line and a `data:`
        line (the Responses API's); only the fast paths differ, never the framing."""
        self._named = named
        self.oversized = 0
        """Events skipped because they were larger than `max_event_bytes`."""
        self._max = max_event_bytes
        self._held = b""  # the incomplete event from its first byte, or a partial BOM
        self._line = 0  # where in _held the incomplete last line starts (len: at a line start)
        self._content_end = 0  # where in _held the content of its last complete line ends
        self._fresh = True  # nothing seen yet: a BOM may still open the stream
        self._cr = False  # the last piece ended in a "\r" that ended a line
        self._cr_span = False  # ... and that line was the blank line ending a span
        self._skipping = False  # inside an oversized event, until its blank line
        self._skip_open = False  # ... in the middle of one of its lines

    @property
    def max_event_bytes(self) -> int:
        """The size limit of an event."""
        return self._max

    @property
    def idle(self) -> bool:
        """Nothing held and no pending state: the next byte starts a line between events."""
        return not (self._held or self._fresh or self._cr or self._skipping)

    def reset(self) -> None:
        """Forget everything, as at the start of a stream."""
        self._held = b""
        self._line = self._content_end = 0
        self._fresh = True
        self._cr = self._cr_span = self._skipping = self._skip_open = False

    def feed(self, chunk: bytes) -> Frames:
        """Frame one more piece of the stream."""
        end = self.single(chunk)
        if end >= 0:
            return Frames(chunk, [(0, end, end + 2)], end + 2)
        return self.frame(chunk)

    def frame(self, chunk: bytes) -> Frames:
        """`feed` for a caller that has just seen `single` fail on `chunk`."""
        held = self._held
        if not chunk:
            return Frames(held, [], 0)
        pos = 0  # where in data the scan starts: a line start unless a held line goes on
        lead = False
        if self._fresh:
            data = held + chunk if held else chunk
            if len(data) < len(BOM) and BOM.startswith(data):
                self._held = data
                return Frames(data, [], 0)
            self._fresh = False
            held = self._held = b""
            chunk = data
            pos = len(BOM) if data.startswith(BOM) else 0
        if self._cr:
            self._cr = False
            if chunk[0] == _LF:
                pos = len(held) + 1  # the "\n" completes the "\r\n" that ended a line
                lead = not held and self._cr_span
        data = held + chunk if held else chunk
        if not self._skipping and not self._cr and _CR not in data:  # an int: a memchr
            frames = self._feed_lf(data, pos)
        else:
            frames = self._feed_any(data, pos)
        frames.lead = lead
        return frames

    def single(self, chunk: bytes) -> int:
        """The hot path (`_single_line`, `_single_named`). Chosen per call, not bound once
        into an attribute: a bound method stored on its own object is a reference cycle, and
        every finished stream's framer would wait for the cyclic collector."""
        return self._single_named(chunk) if self._named else self._single_line(chunk)

    def _single_line(self, chunk: bytes) -> int:
        """The hot path, without allocating: if `chunk` is exactly one whole one-line event
        within the size limit, "\\n"-framed, and the framer is idle, return its `body_end`
        (the framer stays idle, as `feed` would leave it); else -1, and `feed` is the way.
        Most pieces of a stream that is not under load are one event each."""
        if self._held or self._fresh or self._cr or self._skipping:
            return -1  # not idle: tested first, it spares the finds of a held stream's pieces
        n = len(chunk) - 2
        # One line and a blank line: the first "\n" is the one before the last byte, a "\n".
        # One-byte finds are a memchr each; `in` with an int is one without parsing arguments.
        if (n > 0 and chunk[-1] == _LF and chunk.find(b"\n") == n and n <= self._max
                and _CR not in chunk):
            return n
        return -1

    def _single_named(self, chunk: bytes) -> int:
        """`_single_line` for a piece that is one whole event of exactly two lines."""
        if self._held or self._fresh or self._cr or self._skipping:
            return -1
        n = len(chunk) - 2
        first = chunk.find(b"\n")
        if (0 < first < n - 1 and chunk[-1] == _LF and chunk.find(b"\n", first + 1) == n
                and n <= self._max and _CR not in chunk):
            return n
        return -1

    def _feed_lf(self, data: bytes, pos: int) -> Frames:
        """The usual case, without any "\\r": an event ends at its first "\\n\\n"."""
        n = len(data)
        spans: list[Span] = []
        held = len(self._held)
        if held:
            start = 0
            search = held - 1  # the held event has no "\n\n": one can end at its last byte
        else:
            start = pos
            while start < n and data[start] == _LF:  # blank lines between events
                start += 1
            search = start
        limit = self._max
        find = data.find
        named = self._named
        while start < n:
            if named:  # events of several lines: the "\n\n" itself
                end = find(b"\n\n", search)
            else:
                # The first "\n\n", looked for by its "\n"s: a one-byte find is a memchr,
                # and an Azure chat event is one line, so its first "\n" is usually the one.
                end = find(b"\n", search)
                while 0 <= end < n - 1 and data[end + 1] != _LF:
                    end = find(b"\n", end + 2)
                if end >= n - 1:
                    end = -1
            if end < 0:
                content_end = n - 1 if data[n - 1] == _LF else n
                # Where its last line starts is needed only if a "\r" comes (`_feed_any`):
                # found then, not on every piece that ends mid-event.
                return self._hold(data, spans, start, content_end, _LINE_UNKNOWN, False)
            if end - start <= limit:
                spans.append((start, end, end + 2))
            else:
                self.oversized += 1
            start = end + 2
            while start < n and data[start] == _LF:
                start += 1
            search = start
        self._held = b""
        return Frames(data, spans, n)

    def _feed_any(self, data: bytes, pos: int) -> Frames:
        """Any mix of line endings, and the skipping of an oversized event, line by line."""
        n = len(data)
        spans: list[Span] = []
        limit = self._max
        held = self._held
        skipping = self._skipping
        start = 0 if held else -1  # where the current event starts; -1: between events
        content_end = self._content_end
        if held:
            line = self._line if pos <= len(held) else pos
            if line == _LINE_UNKNOWN:  # held by `_feed_lf`: no "\r" in it
                line = held.rfind(b"\n") + 1
            scan = max(pos, len(held))
        else:
            # A line of a skipped event that goes on from the last piece is not blank.
            line = -1 if skipping and self._skip_open and pos == 0 else pos
            scan = pos
        cr_span = False
        cr = data.find(b"\r", scan)
        lf = data.find(b"\n", scan)
        while True:
            if 0 <= cr < scan:
                cr = data.find(b"\r", scan)
            if 0 <= lf < scan:
                lf = data.find(b"\n", scan)
            if cr < 0 and lf < 0:
                break
            if cr < 0 or 0 <= lf < cr:
                eol, after = lf, lf + 1
            elif cr + 1 < n:
                eol, after = cr, cr + 2 if data[cr + 1] == _LF else cr + 1
            else:
                eol, after = cr, n
            at_end_cr = eol == n - 1 and data[eol] == _CR
            if eol == line:  # a blank line
                if start >= 0:
                    if content_end - start <= limit:
                        spans.append((start, content_end, after))
                        cr_span = at_end_cr
                    else:
                        self.oversized += 1
                    start = -1
                elif skipping:
                    skipping = False
            elif not skipping:
                if start < 0:
                    start = line
                content_end = eol
            self._cr = at_end_cr
            line = scan = after
        self._cr_span = cr_span and self._cr
        if line < n or (line < 0 and n):  # a line without its end yet
            if skipping:
                self._skipping, self._skip_open = True, True
                self._held = b""
                return Frames(data, spans, n)
            if start < 0:
                start = line
            content_end = n
        elif skipping:
            self._skipping, self._skip_open = True, False
            self._held = b""
            return Frames(data, spans, n)
        self._skipping = False
        if start < 0:
            self._held = b""
            return Frames(data, spans, n)
        return self._hold(data, spans, start, content_end, line, True)

    def _hold(self, data: bytes, spans: list[Span], start: int, content_end: int, line: int,
              any_eol: bool) -> Frames:
        """Keep the incomplete event `data[start:]`, or skip it once it is too big."""
        n = len(data)
        if content_end - start > self._max:
            self.oversized += 1
            self._skipping = True
            # Mid-line unless the held bytes end in a line break.
            self._skip_open = content_end == n
            self._held = b""
            return Frames(data, spans, n)
        self._held = data[start:] if start else data
        self._line = _LINE_UNKNOWN if line == _LINE_UNKNOWN else (
            line if 0 <= line <= n else n) - start
        self._content_end = content_end - start
        return Frames(data, spans, start)
