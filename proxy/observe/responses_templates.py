"""Byte templates of Responses API delta events: the observer's fast path for the Responses API.

A Responses stream is mostly delta events, and every one differs from the last in its
`sequence_number` (an integer) and its `delta` (a string), so chat's templates
(`proxy.observe.templates`) never match them. Here a template is learned from one delta event's
data with the values of `sequence_number`, `delta` and `obfuscation` cut out: `F0 V1 F1 ... Vk
Fk`. A later event whose bytes equal the fixed texts F around valid values (an unsigned integer;
a JSON string body, non-empty for an output delta) is the same JSON object with other values in
those members, so it means the same: one output delta (or, for reasoning text, none).

Events come as `event: <type>` then one `data: <json>` line (docs/responses-wire.md); the
observer matches the data line where it lies (`line`), or an event's joined data (`payload`).
As in chat's templates the fixed texts are captured as `(.{length})` and compared in one go, so
the compiled pattern depends only on the lengths, and streams of one deployment share it.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Final

__all__ = ["DELTA_KEYS", "ResponsesTemplate"]

DELTA_KEYS: Final = frozenset(
    {
        "type",
        "sequence_number",
        "item_id",
        "output_index",
        "content_index",
        "summary_index",
        "delta",
        "logprobs",
        "obfuscation",
    }
)
"""The members of a delta event; an event with any other is never a template."""

_INT: Final = b"int"
_TEXT: Final = b"text"  # any string body
_OUTPUT: Final = b"output"  # a non-empty string body

# A variable member's key and the start of its value (the value's own syntax is checked below).
_VARIABLE: Final = re.compile(rb'"(sequence_number|delta|obfuscation)"[ \t\r\n]*:[ \t\r\n]*')
_UNSIGNED: Final = re.compile(rb"0|[1-9][0-9]*+")
_STRING: Final = re.compile(rb'"((?:[^"\\]|\\.)*+)"', re.DOTALL)
# A JSON string body up to its closing quote (possessive: a body never gives bytes back, so a
# look-alike event cannot end a body early at an escaped quote); within one line, or not.
_LINE_BODY: Final = rb'[^"\\\r\n]*+(?:\\[^\r\n][^"\\\r\n]*+)*+'
_BODY: Final = rb'[^"\\]*+(?:\\.[^"\\]*+)*+'
# A JSON integer (a fraction or exponent after it would not be the next fixed text).
_INT_VALUE: Final = rb"(?:0|[1-9][0-9]*+)"
# What a value is replaced with to check that the cut-out spans are exactly those members.
_PROBES: Final = {_INT: (b"987654321", 987654321), _TEXT: (b"\\u0001", "\x01")}


class ResponsesTemplate:
    """One delta event's data with its variable values cut out."""

    __slots__ = ("deltas", "fixed", "framed", "framed_at", "framed_fixed", "line", "line_fixed",
                 "payload")

    def __init__(self, name: bytes, fixed: tuple[bytes, ...], kinds: tuple[bytes, ...],
                 deltas: int) -> None:
        self.fixed = fixed
        head = b"event: " + name + b"\ndata: "
        self.line_fixed = (head + fixed[0], *fixed[1:])  # one group fewer to capture
        self.deltas = deltas
        """Output deltas in a matching event: 1, or 0 for reasoning text."""
        lengths = tuple(map(len, fixed))
        self.payload = _pattern(lengths, kinds, 0).fullmatch
        """(data) -> match: an event's data (its `data:` lines joined), as dispatched."""
        self.line = _pattern(lengths, kinds, len(head)).fullmatch
        """(buf, pos, endpos) -> match: `buf[pos:endpos]` is a whole framed event: the line
        `event: <its type>` and one `data: ` line (captured as a fixed text like the others,
        which is cheaper than matching it; an event named otherwise is read the slow way,
        with the same result). No value may hold a line break here, nor may the fixed texts,
        so a match proves those are its only lines."""
        self.framed_fixed = (*self.line_fixed[:-1], self.line_fixed[-1] + b"\n\n")
        framed = _pattern(lengths, kinds, len(head), 2)
        self.framed = framed.fullmatch
        """(buf[, pos, endpos]) -> match: `line` with the blank line that ends the event."""
        self.framed_at = framed.match
        """(buf, pos) -> match: the same at `pos`, up to the match's end."""

    def release(self) -> None:
        """Nothing to drop: the matchers are the compiled patterns' own (no cycle)."""

    @classmethod
    def learn(cls, data: bytes, obj: dict[str, Any], deltas: int,
              max_bytes: int) -> ResponsesTemplate | None:
        """A template from a delta event's data `data`, which parsed to `obj`; None when it
        is too big, not on one line, or its variable values are not where they seem."""
        kind = obj.get("type")
        if len(data) > max_bytes or b"\n" in data or b"\r" in data or not isinstance(kind, str) \
                or "\n" in kind or "\r" in kind:
            return None
        fixed: list[bytes] = []
        kinds: list[bytes] = []
        probe: list[bytes] = []
        expected = dict(obj)
        cursor = 0
        for match in _VARIABLE.finditer(data):
            key = match.group(1).decode()
            if match.start() < cursor or key not in obj:
                return None
            start = match.end()
            if key == "sequence_number":
                value = _UNSIGNED.match(data, start)
                end, value_kind = (value.end() if value else -1), _INT
            else:
                value = _STRING.match(data, start)
                start, end = start + 1, (value.end() - 1 if value else -1)
                value_kind = _OUTPUT if key == "delta" and deltas else _TEXT
            if end < 0:
                return None
            fixed.append(data[cursor:start])
            kinds.append(value_kind)
            probe += [data[cursor:start], _PROBES[_INT if value_kind == _INT else _TEXT][0]]
            expected[key] = _PROBES[_INT if value_kind == _INT else _TEXT][1]
            cursor = end
        fixed.append(data[cursor:])
        probe.append(data[cursor:])
        # The spans must be exactly the values of those members, each once: the event with
        # every span replaced must parse to the object with those members replaced.
        if len(kinds) != len(_VARIABLE_KEYS & obj.keys()) or not _parses_to(probe, expected):
            return None
        return cls(kind.encode(), tuple(fixed), tuple(kinds), deltas)


_VARIABLE_KEYS: Final = frozenset({"sequence_number", "delta", "obfuscation"})


def _parses_to(parts: list[bytes], expected: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(b"".join(parts)) == expected)
    except (ValueError, RecursionError):
        return False


@lru_cache(maxsize=96)
def _pattern(lengths: tuple[int, ...], kinds: tuple[bytes, ...], head: int,
             tail: int = 0) -> re.Pattern[bytes]:
    """`(F0) V1 (F1) ... Vk (Fk)` by the lengths of the fixed texts; with a `head` length, as
    a whole event: its event and data field names first, no line break in a string value;
    with a `tail`, the blank line after it too."""
    body = _LINE_BODY if head else _BODY
    values = {_INT: _INT_VALUE, _TEXT: body, _OUTPUT: rb'(?!")' + body}
    last = len(lengths) - 1
    parts = [b"(.{%d})" % (head + lengths[0] + (tail if last == 0 else 0))]
    for i, (length, kind) in enumerate(zip(lengths[1:], kinds, strict=True), 1):
        parts += [values[kind], b"(.{%d})" % (length + (tail if i == last else 0))]
    return re.compile(b"".join(parts), re.DOTALL)
