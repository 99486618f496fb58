"""Incremental server-sent-events framing over bytes (WHATWG "event stream" rules).

Two consumers, two needs:

- `SSEDecoder` turns a copy of the response bytes into events for the observer. It works in
  bytes, so a UTF-8 character, a line or a `\\r\\n` pair may be cut anywhere between pieces.
- `UsageChunkStripper` sits in the byte path when the proxy itself asked Azure for
  `stream_options.include_usage`: it forwards every event byte-for-byte except the usage-only
  chunk the client never asked for.

Both keep O(1) state per stream apart from the one incomplete event they hold, and that event is
bounded by `max_event_bytes`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent", "UsageChunkStripper"]

DEFAULT_MAX_EVENT_BYTES = 1 << 20

_BOM = b"\xef\xbb\xbf"
_LF = 0x0A
_CR = 0x0D


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event."""

    data: bytes
    """The `data:` lines joined with `\\n`, as raw bytes (JSON parsers take bytes directly)."""
    event: str | None = None
    """The `event:` name, or None when the event had none (the spec's "message")."""


class SSEDecoder:
    """Splits a byte stream into events, for any split of the stream into pieces.

    Line endings `\\n`, `\\r\\n` and `\\r` are normalised to `\\n` on the way in (a piece ending
    in `\\r` remembers it, so a `\\n` opening the next piece is not a second line break). After
    that an event is exactly the text up to the next `\\n\\n`. `id:` and `retry:` are ignored:
    the observer has no use for reconnection state.
    """

    __slots__ = ("_buf", "_cr", "_fresh", "_max", "_skip_nl", "_skipping", "oversized")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.oversized = 0  # events discarded because they grew past max_event_bytes
        self._max = max_event_bytes
        # Lines of the event being assembled; never contains b"\n\n".
        self._buf = bytearray()
        # The stream may open with a UTF-8 BOM, which the spec says to drop.
        self._fresh = True
        # The previous piece ended in "\r": a "\n" opening this piece completes that "\r\n".
        self._cr = False
        # Discarding an oversized event until its blank line; _skip_nl: discarded bytes ended "\n".
        self._skipping = False
        self._skip_nl = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Return the events completed by `chunk`."""
        if self._fresh or self._cr or self._skipping or chunk.find(b"\r") >= 0:
            chunk = self._prepare(chunk)
            if not chunk:
                return []
        buf = self._buf
        if buf:
            # buf holds no b"\n\n", so a new one can start at its last byte at the earliest.
            start = len(buf) - 1
            buf += chunk
            end = buf.rfind(b"\n\n", start)
            if end < 0:
                self._bound_tail()
                return []
            data = bytes(buf)
            buf.clear()
        else:
            end = chunk.rfind(b"\n\n")
            if end < 0:
                buf += chunk
                self._bound_tail()
                return []
            data = chunk
        if end + 2 < len(data):
            buf += data[end + 2 :]
            self._bound_tail()
        if data.find(b"\n") == end and data.startswith(b"data: ") and end <= self._max:
            # One event made of one "data: " line: nearly every Azure piece looks like this.
            return [SSEEvent(data[6:end])]
        events: list[SSEEvent] = []
        for block in data[:end].split(b"\n\n"):
            if block.startswith(b"data: ") and block.find(b"\n") < 0 and len(block) <= self._max:
                events.append(SSEEvent(block[6:]))
            else:
                self._dispatch(block, events)
        return events

    @property
    def idle(self) -> bool:
        """True between events: nothing is held, so the next byte opens a new event."""
        return not (self._buf or self._fresh or self._cr or self._skipping)

    def pending_end(self, chunk: bytes) -> int:
        """How much of `chunk` the decoder needs to finish the event it holds: feeding it just
        `chunk[:k]` dispatches that event and leaves the decoder idle. 0 when idle. -1 when
        `chunk` does not finish the event, or in the rare states that `_prepare` handles
        (stream start, a "\\r" at the end of the last piece, skipping an oversized event) or
        when a "\\r" comes before the end: then the simple answer may be wrong."""
        if self._fresh or self._cr or self._skipping:
            return -1
        if not self._buf:
            return 0
        # buf holds no b"\n\n", so the first one ends at most one byte into chunk...
        if chunk and chunk[0] == _LF and self._buf[-1] == _LF:
            return 1
        # ...or lies wholly in it. Looked for by its first "\n": a one-byte find is a memchr.
        n = len(chunk)
        end = chunk.find(b"\n")
        while 0 <= end < n - 1 and chunk[end + 1] != _LF:
            end = chunk.find(b"\n", end + 2)
        if not 0 <= end < n - 1 or chunk.find(b"\r", 0, end) >= 0:
            return -1
        return end + 2

    def flush(self) -> list[SSEEvent]:
        """End of stream. An event without its closing blank line is not dispatched (per the
        spec), so this always returns [] and just resets the decoder for reuse."""
        self._buf.clear()
        self._fresh = True
        self._cr = self._skipping = self._skip_nl = False
        return []

    def _prepare(self, chunk: bytes) -> bytes:
        """The rare cases: BOM, line endings other than "\\n", skipping an oversized event."""
        if self._fresh:
            # Held bytes can only be a partial BOM here: nothing else is kept before 3 bytes.
            chunk = bytes(self._buf) + chunk
            self._buf.clear()
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._buf += chunk
                return b""
            self._fresh = False
            chunk = chunk.removeprefix(_BOM)
        if self._cr and chunk:
            self._cr = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._skipping:
            probe = b"\n" + chunk if self._skip_nl else chunk
            end = probe.find(b"\n\n")
            if end < 0:
                self._skip_nl = probe.endswith(b"\n")
                return b""
            self._skipping = False
            self.oversized += 1
            chunk = probe[end + 2 :]
        return chunk

    def _bound_tail(self) -> None:
        """Drop a held partial event once it is too big; skip the rest of it as it arrives."""
        if len(self._buf) > self._max:
            self._skip_nl = self._buf.endswith(b"\n")
            self._buf.clear()
            self._skipping = True

    def _dispatch(self, block: bytes, events: list[SSEEvent]) -> None:
        """Parse the lines of one event. A block holds no b"\\n\\n", so an empty line can only
        be its first (after a run of blank lines) or last, where it dispatches nothing new."""
        if len(block) > self._max:
            self.oversized += 1
            return
        data: list[bytes] = []
        name: str | None = None
        for line in block.split(b"\n"):
            if not line or line[0] == 0x3A:  # blank, or a ":" comment
                continue
            colon = line.find(b":")
            if colon < 0:
                field, value = line, b""
            else:
                field, value = line[:colon], line[colon + 1 :]
                if value[:1] == b" ":
                    value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value.decode("utf-8", "replace") or None
        # The spec dispatches only when a data line was seen (an empty `data:` still counts).
        if data:
            events.append(SSEEvent(b"\n".join(data), name))


# `"usage"` followed by an object: the only events the stripper parses.
_USAGE_OBJECT = re.compile(rb'"usage"[ \t\r\n]*:[ \t\r\n]*\{')


class UsageChunkStripper:
    """Forward an SSE byte stream unchanged except for the usage-only chunk.

    Used when the proxy added `stream_options.include_usage` on the client's behalf: Azure then
    sends one extra event whose JSON has `choices: []` and a `usage` object, which this drops.
    Every other byte passes through exactly, event by event and with its own terminator, as soon
    as the event is complete; only the incomplete tail is held back.

    Fails open: an event that grows past `max_event_bytes` turns stripping off for the rest of
    the stream, so the proxy never holds an unbounded event nor alters bytes it did not parse.
    """

    __slots__ = ("_held", "_max", "_owed_lf", "_resume", "passthrough")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._held = b""
        # Where the first incomplete line of _held starts: scanning resumes there.
        self._resume = 0
        # The last event ended in a lone "\r" at the end of a piece: a "\n" opening the next
        # piece is part of that terminator. 0: none owed, 1: send it, 2: drop it (event dropped).
        self._owed_lf = 0
        self.passthrough = False  # set once an oversized event made the stripper give up

    def feed(self, chunk: bytes) -> bytes:
        """Return the bytes to send now for this piece."""
        if self.passthrough:
            return chunk
        # The common piece: whole events, "\n" line ends, no usage object. It goes out as it is,
        # without the framing work below (this runs for every chunk of every such stream).
        if (not self._held and not self._owed_lf and chunk.endswith(b"\n\n")
                and _CR not in chunk and not _has_usage_object(chunk)):
            return chunk
        lead = b""
        if self._owed_lf and chunk:
            if chunk[0] == _LF:
                lead = b"\n" if self._owed_lf == 1 else b""
                chunk = chunk[1:]
            self._owed_lf = 0
        held = self._held
        data = held + chunk if held else chunk
        ends: list[int] | None
        if data.find(b"\r") >= 0:
            ends, resume = _event_ends(data, self._resume)
            cut = ends[-1] if ends else 0
        else:
            # Without "\r" an event ends at each "\n\n"; held has none, so look from its end.
            ends = None
            cut = data.rfind(b"\n\n", max(len(held) - 1, 0)) + 2
            cut = 0 if cut < 2 else cut
            resume = max(cut, data.rfind(b"\n", cut) + 1)
        self._held = data[cut:]
        self._resume = resume - cut
        out = self._filter(data[:cut] if cut < len(data) else data, ends) if cut else b""
        if len(self._held) > self._max:
            out += self._held
            self._held = b""
            self.passthrough = True
        return lead + out if lead else out

    def flush(self) -> bytes:
        """End of stream: whatever incomplete tail is held, unchanged."""
        tail, self._held, self._resume, self._owed_lf = self._held, b"", 0, 0
        return tail

    def _filter(self, complete: bytes, ends: list[int] | None) -> bytes:
        """Drop usage-only events from a run of complete events."""
        # A run ending in a lone "\r" may see the "\n" of its "\r\n" in the next piece.
        ambiguous = complete[-1] == _CR and not self._held
        if not _has_usage_object(complete):
            self._owed_lf = 1 if ambiguous else 0
            return complete
        if ends is None:
            ends = _lf_event_ends(complete)
        out: list[bytes] = []
        start = 0
        dropped = False
        for end in ends:
            event = complete[start:end]
            dropped = _has_usage_object(event) and _is_usage_only(event, self._max)
            # Blank lines before a dropped event are not part of it: they pass.
            out.append(event[: len(event) - len(event.lstrip(b"\r\n"))] if dropped else event)
            start = end
        self._owed_lf = (2 if dropped else 1) if ambiguous else 0
        return b"".join(out)


def _has_usage_object(data: bytes) -> bool:
    # Searched from the end: Azure sorts keys, so `usage` is the last one of a chunk.
    at = data.rfind(b'"usage"')
    while at >= 0:
        # `"usage":null` is on every chunk once include_usage is on: rule it out cheaply.
        if data[at + 7:at + 12] != b":null" and _USAGE_OBJECT.match(data, at):
            return True
        at = data.rfind(b'"usage"', 0, at)
    return False


def _is_usage_only(event: bytes, max_event_bytes: int) -> bool:
    """True for the include_usage chunk: JSON with `choices: []` and a non-null `usage`. The
    prompt-annotation chunk also has `choices: []` but no usage object, so it stays."""
    decoded = SSEDecoder(max_event_bytes).feed(event)
    if len(decoded) != 1:
        return False
    try:
        obj = json.loads(decoded[0].data)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and isinstance(obj.get("usage"), dict)


def _lf_event_ends(data: bytes) -> list[int]:
    """Offsets just past each "\\n\\n" of a "\\n"-only run of complete events."""
    ends = []
    at = data.find(b"\n\n")
    while at >= 0:
        ends.append(at + 2)
        at = data.find(b"\n\n", at + 2)
    return ends


def _event_ends(data: bytes, pos: int) -> tuple[list[int], int]:
    """Scan lines with any mix of "\\n", "\\r\\n", "\\r" endings from `pos` (a line start).

    Returns the offsets just past each blank line (each ends an event) and the start of the
    first incomplete line. A non-blank line ending in "\\r" at the very end is incomplete (a
    "\\n" may follow); a blank one ends its event at once, and the caller remembers that a
    leading "\\n" of the next piece belongs to it.
    """
    ends: list[int] = []
    n = len(data)
    cr = data.find(b"\r", pos)
    while pos < n:
        if 0 <= cr < pos:
            cr = data.find(b"\r", pos)
        lf = data.find(b"\n", pos)
        if cr < 0 or 0 <= lf < cr:
            if lf < 0:
                break
            eol, nxt = lf, lf + 1
        elif cr + 1 < n:
            eol, nxt = cr, cr + 2 if data[cr + 1] == _LF else cr + 1
        elif cr == pos:
            eol, nxt = cr, n
        else:
            break
        if eol == pos:
            ends.append(nxt)
        pos = nxt
    return ends, pos
