"""Server-sent events decoded from bytes: the fields of each event the framer finds.

`SSEDecoder` turns a copy of the response bytes into events for the observers. It works in
bytes, so a UTF-8 character, a line or a `\\r\\n` pair may be cut anywhere between pieces; where
each event begins and ends is `proxy.observe.framing`'s business, and so is the size limit.
`id:` and `retry:` are ignored: the observers have no use for reconnection state.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.observe.framing import DEFAULT_MAX_EVENT_BYTES, Framer

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "parse_event"]

_COLON = 0x3A


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event."""

    data: bytes
    """The `data:` lines joined with `\\n`, as raw bytes (JSON parsers take bytes directly)."""
    event: str | None = None
    """The `event:` name, or None when the event had none (the spec's "message")."""


class SSEDecoder:
    """Splits a byte stream into events, for any split of the stream into pieces."""

    __slots__ = ("_framer",)

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._framer = Framer(max_event_bytes)

    @property
    def oversized(self) -> int:
        """Events skipped because they were larger than `max_event_bytes`."""
        return self._framer.oversized

    @property
    def idle(self) -> bool:
        """True between events: nothing is held, so the next byte opens a new event."""
        return self._framer.idle

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Return the events completed by `chunk`."""
        frames = self._framer.feed(chunk)
        data = frames.data
        events = []
        for start, body_end, _ in frames.spans:
            event = parse_event(data, start, body_end)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> None:
        """End of stream. An event without its closing blank line is never dispatched (per
        the spec, as clients do), so there is nothing to return; the decoder is reset for
        reuse (a BOM may open the next stream)."""
        self._framer.reset()

    flush = close


def parse_event(data: bytes, start: int, body_end: int) -> SSEEvent | None:
    """The event in `data[start:body_end]` (one framed event, its lines without the final line
    break), or None when it has no data line (the spec dispatches nothing then)."""
    if data.startswith(b"data: ", start) and _one_line(data, start, body_end):
        return SSEEvent(data[start + 6 : body_end])  # nearly every Azure event looks like this
    lines: list[bytes] = []
    name: str | None = None
    for line in data[start:body_end].splitlines():  # bytes split at \r\n, \r and \n only
        if not line or line[0] == _COLON:  # a ":" comment
            continue
        colon = line.find(b":")
        if colon < 0:
            field, value = line, b""
        else:
            field, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if field == b"data":
            lines.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace") or None
    # The spec dispatches only when a data line was seen (an empty `data:` still counts).
    return SSEEvent(b"\n".join(lines), name) if lines else None


def _one_line(data: bytes, start: int, end: int) -> bool:
    return data.find(b"\n", start, end) < 0 and data.find(b"\r", start, end) < 0
