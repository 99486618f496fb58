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
# `"usage"` followed by an object: the only events parsed, to find the usage chunk.
_USAGE_OBJECT: Final = re.compile(rb'"usage"[ \t\r\n]*:[ \t\r\n]*\{')


class UsageStripper:
    """Rewrites one injected stream; `feed` each piece, `flush` at the end."""

    __slots__ = ("_drop_lead", "_framer")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._framer = Framer(max_event_bytes)
        # The last piece ended in the "\r" of a removed event's blank line: a "\n" opening the
        # next piece completes that "\r\n" and goes with the event.
        self._drop_lead = False

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send now for this piece."""
        if not chunk:
            return b""
        end = self._framer.single(chunk)
        if end >= 0:  # one whole one-line event: the usual piece
            self._drop_lead = False
            if chunk.startswith(b"data: {") and chunk.endswith(_USAGE_NULL_LINE_END):
                return chunk[: end - len(_USAGE_NULL_END)] + b"}\n\n"  # every injected chunk
            cut = _removal(chunk, (0, end, end + 2))
            return chunk if cut is None else chunk[: cut[0]] + chunk[cut[1] :]
        framer = self._framer
        if framer.idle and chunk.find(b"\r") < 0:
            # A busy stream's piece: whole one-line events, walked here; the framer, idle,
            # takes whatever follows them as it would have after them.
            self._drop_lead = False
            pos, out = _walk(chunk, framer.max_event_bytes)
            if pos == len(chunk):
                return out[0] if len(out) == 1 else b"".join(out)
            if pos:
                return b"".join(out) + self._framed(chunk[pos:])
        return self._framed(chunk)

    def _framed(self, chunk: bytes) -> bytes:
        """`feed` for any piece, by the framer's spans."""
        frames = self._framer.feed(chunk)
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
        for span in spans:
            start, body_end, end = span
            if (data.endswith(_USAGE_NULL_END, start, body_end)
                    and data.startswith(b"data: {", start)
                    and data.find(b"\n", start, body_end) < 0
                    and data.find(b"\r", start, body_end) < 0):
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
        self._drop_lead = False
        return frames.data[frames.settled :]


def _walk(data: bytes, limit: int) -> tuple[int, list[bytes]]:
    """How far `data` (no "\\r" in it, framed from an idle framer) is events that the rules
    below either leave or strip of their member inline, and the parts of `data[:pos]`
    rewritten. Each is
    one line ended by "\\n\\n", as the framer would find it there; an event with a `"usage"`
    other than that member ends the walk (the usage chunk: `_removal` decides)."""
    find = data.find
    n = len(data)
    out: list[bytes] = []
    pos = cursor = 0
    while True:
        end = find(b"\n", pos)
        if end < 0 or end + 1 >= n or data[end + 1] != 0x0A or end - pos > limit or end == pos:
            break
        if data.endswith(_USAGE_NULL_END, pos, end) and data.startswith(b"data: {", pos):
            out.append(data[cursor : end - len(_USAGE_NULL_END)])
            cursor = end - 1
        elif data.rfind(b'"usage"', pos, end) >= 0:
            break
        pos = end + 2
    out.append(data[cursor:pos])
    return pos, out


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
