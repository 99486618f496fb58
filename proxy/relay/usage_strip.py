"""Undo, in the bytes a client receives, what injecting `include_usage` made Azure send.

When the proxy adds `stream_options.include_usage` for a client that did not ask for it
(`proxy.relay.usage`), Azure changes the stream in exactly two ways (docs/usage-injection.md):
it adds `,"usage":null` before the closing brace of every other chunk, and sends one more chunk,
with `choices: []` and a `usage` object, before `[DONE]`. `UsageStripper` removes exactly
those, so the client receives the bytes it would have received without the injection.

It is a byte rewriter, not an observer: every other byte passes unchanged, each event as soon
as it is complete (only the incomplete tail is held, by the framer). What it removes from an
event depends on that event's bytes alone, never on what came before it in the stream: an
oversized event, a malformed one or an odd line ending passes through and the events after it
are treated as ever.
"""

from __future__ import annotations

import re
from typing import Final

from proxy.jsonload import loads
from proxy.observe.framing import DEFAULT_MAX_EVENT_BYTES, Framer, Span
from proxy.observe.sse import parse_event

__all__ = ["UsageStripper"]

USAGE_NULL: Final = b',"usage":null'
"""The member include_usage adds to every chunk but the usage chunk, in Azure's exact bytes."""
_USAGE_NULL_END: Final = USAGE_NULL + b"}"
_USAGE_NULL_LINE_END: Final = _USAGE_NULL_END + b"\n\n"
_OBJECT_END: Final = b"}\n\n"
_DATA_OBJECT: Final = b"data: {"
_USAGE_NULL_NEXT: Final = _USAGE_NULL_LINE_END + _DATA_OBJECT
_LF: Final = 0x0A
_CR: Final = 0x0D
# `"usage"` followed by an object: the only events parsed, to find the usage chunk.
_USAGE_OBJECT: Final = re.compile(rb'"usage"[ \t\r\n]*:[ \t\r\n]*\{')


class UsageStripper:
    """Rewrites one injected stream; `feed` each piece, `flush` at the end."""

    __slots__ = ("_between", "_drop_lead", "_framer", "_max_framed")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._framer = Framer(max_event_bytes)
        # The last piece ended in the "\r" of a removed event's blank line: a "\n" opening the
        # next piece completes that "\r\n" and goes with the event. (Only a framed piece can
        # end so, and leaves the framer not idle: the fast paths never see that state.)
        self._drop_lead = False
        self._between = False  # the framer is idle (it changes only when fed or reset)
        self._max_framed = max_event_bytes + 2  # a whole event within the limit, "\n\n" too

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send now for this piece."""
        if self._between:
            # The usual piece: one whole `data: {...,"usage":null}` line and its blank line.
            # `removesuffix` tests and cuts in one call; `in` with an int is a memchr.
            line = chunk.removesuffix(_USAGE_NULL_LINE_END)
            if (line is not chunk and _LF not in line and _CR not in line
                    and line[:7] == _DATA_OBJECT and len(chunk) <= self._max_framed):
                return line + _OBJECT_END
            return self._walked(chunk)
        return self._framed(chunk)

    def _walked(self, chunk: bytes) -> bytes:
        """A piece from an idle framer: its leading run of whole one-line `data: {` events
        each ending in the injected member, rewritten at once, the rest framed.

        Split at every `,"usage":null}\\n\\n` (which cannot overlap itself), the parts
        before the last are those events without it exactly when the piece opens with
        `data: {`, no part holds a line break, and every split but one that the last part
        does not open like that is followed by `data: {`. Each is then one line, ended by
        "\\n\\n", as the framer would find it, and loses the member as `_removal` says; the
        last part is what follows them, for the framer (idle, as it would be after them)."""
        if _CR not in chunk and len(chunk) <= self._max_framed:
            parts = chunk.split(_USAGE_NULL_LINE_END)
            runs = len(parts) - 1
            if runs and chunk[:7] == _DATA_OBJECT:
                tail = parts[-1]
                parts[-1] = b""
                if (_LF not in b"".join(parts) and chunk.count(_USAGE_NULL_NEXT)
                        == runs - 1 + (tail[:7] == _DATA_OBJECT)):
                    out = _OBJECT_END.join(parts)
                    return out + self._framed(tail) if tail else out
        return self._framed(chunk)

    def _framed(self, chunk: bytes) -> bytes:
        """`feed` for any piece, by the framer's spans."""
        if not chunk:
            return b""
        framer = self._framer
        frames = framer.feed(chunk)
        self._between = framer.idle
        data, settled = frames.data, frames.settled
        skip_lead = frames.lead and self._drop_lead
        self._drop_lead = False
        spans = frames.spans
        if not spans:
            return data[1 if skip_lead else 0 : settled]
        # The usual piece: whole events, none of them touched. It leaves as it came.
        if not skip_lead and settled == len(data) and data.find(b'"usage"') < 0:
            return data
        out: list[bytes] = []
        cursor = 1 if skip_lead else 0
        no_cr = _CR not in data  # once, not a find per event
        for span in spans:
            start, body_end, end = span
            if (data.endswith(_USAGE_NULL_END, start, body_end)
                    and data.startswith(_DATA_OBJECT, start)
                    and data.find(b"\n", start, body_end) < 0
                    and (no_cr or data.find(b"\r", start, body_end) < 0)):
                # One `data: {...}` line: every injected chunk (as in `_removal`, inline).
                out.append(data[cursor : body_end - len(_USAGE_NULL_END)])
                cursor = body_end - 1
                continue
            if data.rfind(b'"usage"', start, body_end) < 0:
                continue
            cut = _removal(data, span)
            if cut is None:
                continue
            out.append(data[cursor:cut[0]])
            cursor = cut[1]
            self._drop_lead = cut[1] == end == len(data)
        out.append(data[cursor:settled])
        return b"".join(out)

    def flush(self) -> bytes:
        """End of stream: the incomplete tail the framer held, unchanged."""
        frames = self._framer.feed(b"")
        self._framer.reset()
        self._drop_lead = self._between = False
        return frames.data[frames.settled :]


def _removal(data: bytes, span: Span) -> tuple[int, int] | None:
    """The bytes of one event that the injection caused, as (from, to), or None."""
    start, body_end, end = span
    if data.endswith(_USAGE_NULL_END, start, body_end):
        # The last data line ends the JSON: the member goes (see docs/usage-injection.md on
        # why a `,"usage":null}` at the very end is always a top-level member).
        if _last_line_is_data(data, start, body_end):
            return body_end - len(_USAGE_NULL_END), body_end - 1
        return None
    at = data.rfind(b'"usage"', start, body_end)
    if at < 0 or not _has_usage_object(data, start, body_end, at):
        return None
    return (start, end) if _is_usage_chunk(data, start, body_end) else None


def _last_line_is_data(data: bytes, start: int, body_end: int) -> bool:
    """Is the event's last line a data line, and its data a JSON object?"""
    if data.startswith(b"data: {", start) and data.find(b"\n", start, body_end) < 0 \
            and data.find(b"\r", start, body_end) < 0:
        return True  # one `data: {...}` line: every Azure chunk
    line = max(data.rfind(b"\n", start, body_end), data.rfind(b"\r", start, body_end)) + 1
    if line == 0:
        line = start
    if not data.startswith(b"data:", line):
        return False
    event = parse_event(data, start, body_end)
    return event is not None and event.data[:1] == b"{"


def _has_usage_object(data: bytes, start: int, body_end: int, at: int) -> bool:
    while at >= 0:
        if _USAGE_OBJECT.match(data, at, body_end):
            return True
        at = data.rfind(b'"usage"', start, at)
    return False


def _is_usage_chunk(data: bytes, start: int, body_end: int) -> bool:
    """The include_usage chunk: JSON with `choices: []` and a `usage` object. The prompt
    annotation chunk also has `choices: []`, but no usage object, so it stays."""
    event = parse_event(data, start, body_end)
    if event is None:
        return False
    try:
        obj = loads(event.data)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and isinstance(obj.get("usage"), dict)
