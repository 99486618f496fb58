"""Byte templates of a stream's ordinary content chunks: the observer's fast path.

After one content chunk has been parsed in full, its bytes are kept as a template with the
strings that vary from chunk to chunk (`delta.content`, tool-call `arguments`, `obfuscation`) cut
out. A later chunk whose bytes equal the template outside those strings is, by construction, the
same JSON with other string values, so it means the same thing and is counted without parsing.

A template is `F0 S1 F1 ... Sk Fk`: the F are the fixed texts, each S the body of a JSON string
(between its quotes). It is checked with one regular expression that finds where each body ends
and captures the fixed texts, which are then compared with the learned ones in one go. The
fixed texts are captured as `(.{length})`, which the `re` engine skips in constant time, rather
than spelled out, which it would compare byte by byte: most of a chunk is fixed text, and the
engine's per-byte cost is what this saves. (The pattern thus depends only on the lengths, so
streams of one deployment share compiled patterns.)

The string bodies are not validated: a malformed escape or a raw control byte inside one is
counted as output rather than as a parse error.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Final

__all__ = ["Template"]

# A key whose string value may vary between chunks of the same shape.
_VARIABLE_KEY: Final = re.compile(rb'"(content|arguments|obfuscation)"[ \t\r\n]*:[ \t\r\n]*"')
# A JSON string body up to its closing quote: a quote preceded by an odd run of backslashes is
# escaped, so the body goes on. Possessive: a body never gives back bytes, so a match cannot end
# a body early at an escaped quote to make a look-alike chunk fit.
_BODY: Final = rb'[^"\\]*+(?:\\.[^"\\]*+)*+'
# The same within one line: an event whose data runs over several lines is matched on its
# joined data instead.
_LINE_BODY: Final = rb'[^"\\\r\n]*+(?:\\[^\r\n][^"\\\r\n]*+)*+'
_NONEMPTY: Final = rb'(?!")'

Matcher = Callable[..., re.Match[bytes] | None]


class Template:
    """A fully parsed plain content chunk with its variable strings cut out."""

    __slots__ = ("_shape", "deltas", "fixed", "framed", "framed_at", "framed_fixed", "line",
                 "line_fixed", "payload")

    def __init__(self, fixed: tuple[bytes, ...], nonempty: tuple[bool, ...], deltas: int) -> None:
        self.fixed = fixed
        self.line_fixed = fixed  # what a `line` match captures: the same texts
        # The framed patterns match `data: ` and the closing "\n\n" outside their groups,
        # so they capture the same texts: no second copy of them per template.
        self.framed_fixed = fixed
        """What a `framed` match captures."""
        self.deltas = deltas
        """Choice deltas with output in a matching chunk."""
        self._shape = (tuple(map(len, fixed)), nonempty)
        # Either matcher finds where each body ends and captures the fixed texts; a match
        # counts when those equal `fixed` (`m is not None and m.groups() == fixed`). Until a
        # chunk opens like this one, they are stand-ins that compile the real ones on that
        # chunk: compiling takes re's parser some hundred microseconds, and a stream whose
        # chunks all differ (in their verdicts, say) would otherwise pay it for nothing.
        self.payload: Matcher = self._first_payload
        """(data) -> match: an event's data (its `data:` lines joined), as dispatched."""
        self.line: Matcher = self._first_line
        """(buf, pos, endpos) -> match: `buf[pos:endpos]` is the rest of a framed event's
        one `data: ` line (the framer gives the bounds). No body may hold a line break here,
        nor may the fixed texts, so a match also proves the event is that one line."""
        self.framed: Matcher = self._first_framed
        """(buf[, pos, endpos]) -> match: `buf[pos:endpos]` is the whole event, `data: ` to
        the blank line ending it, "\\n\\n"; a match proves it is one such line, so from an
        idle framer it is exactly the event the framer would find (the fast path of a piece
        that is one event: no framing, no slicing)."""
        self.framed_at: Matcher = self._first_framed_at
        """(buf, pos) -> match: the same at `pos`, up to the match's end (a walk through a
        piece of several events)."""

    def release(self) -> None:
        """The stream is over: drop the matchers. The stand-ins are bound methods of this
        template, a reference cycle that would otherwise wait for the cyclic collector."""
        self.payload = self.line = self.framed = self.framed_at = _no_match

    def _first_payload(self, data: bytes) -> re.Match[bytes] | None:
        if not data.startswith(self.fixed[0]):
            return None  # as the real matcher, whose first group would differ
        self._compile()
        return self.payload(data)

    def _first_line(
        self, buf: bytes, pos: int = 0, endpos: int = sys.maxsize
    ) -> re.Match[bytes] | None:
        if not buf.startswith(self.fixed[0], pos, endpos):
            return None
        self._compile()
        return self.line(buf, pos, endpos)

    def _first_framed(
        self, buf: bytes, pos: int = 0, endpos: int = sys.maxsize
    ) -> re.Match[bytes] | None:
        if not (buf.startswith(b"data: ", pos, endpos)
                and buf.startswith(self.fixed[0], pos + 6, endpos)):
            return None
        self._compile()
        return self.framed(buf, pos, endpos)

    def _first_framed_at(self, buf: bytes, pos: int = 0) -> re.Match[bytes] | None:
        if not (buf.startswith(b"data: ", pos) and buf.startswith(self.fixed[0], pos + 6)):
            return None
        self._compile()
        return self.framed_at(buf, pos)

    def _compile(self) -> None:
        self.payload = _pattern(*self._shape, line=False).fullmatch
        self.line = _pattern(*self._shape, line=True).fullmatch
        framed = _pattern(*self._shape, line=True, framed=True)
        self.framed = framed.fullmatch
        self.framed_at = framed.match

    @classmethod
    def learn(cls, data: bytes, deltas: int, max_bytes: int) -> Template | None:
        """A template from a chunk that parsed to a JSON object with no effect but `deltas`
        choice deltas with output; None when it is too big or not on one line.

        Every `"content"`, `"arguments"` or `"obfuscation"` string becomes variable, wherever it
        sits: the observer reads such a string only as a delta's (or message's) content and only
        for being non-empty, so a "content" string must stay non-empty and the others may be
        anything. (A regex hit is a real key and value here: its closing quote is unescaped and
        followed by a colon, and the chunk parsed as JSON.)
        """
        if len(data) > max_bytes or b"\n" in data or b"\r" in data:
            return None
        fixed: list[bytes] = []
        nonempty: list[bool] = []
        cursor = 0
        for key, start, end in _string_spans(data):
            fixed.append(data[cursor:start])
            nonempty.append(key == b"content")
            cursor = end
        fixed.append(data[cursor:])
        return cls(tuple(fixed), tuple(nonempty), deltas)


def _no_match(*_: object) -> None:
    """A released template's matcher."""


@lru_cache(maxsize=96)
def _pattern(
    lengths: tuple[int, ...], nonempty: tuple[bool, ...], *, line: bool, framed: bool = False
) -> re.Pattern[bytes]:
    """`(F0) S1 (F1) ... Sk (Fk)` by the lengths of the fixed texts; `line`: no line break in
    a body (the data of one line); `framed`: `data: ` before F0 and "\\n\\n" after Fk, matched
    outside the groups (the groups capture the fixed texts alone either way)."""
    body = _LINE_BODY if line else _BODY
    parts = [b"data: " if framed else b"", b"(.{%d})" % lengths[0]]
    for length, must in zip(lengths[1:], nonempty, strict=True):
        parts += [_NONEMPTY if must else b"", body, b"(.{%d})" % length]
    if framed:
        parts.append(b"\n\n")
    return re.compile(b"".join(parts), re.DOTALL)


def _string_spans(data: bytes) -> list[tuple[bytes, int, int]]:
    """(key, start, end) of the string bodies following the variable keys, in order. No match
    can start inside an earlier body: a quote in a body is escaped, so `content"` cannot end
    there."""
    spans: list[tuple[bytes, int, int]] = []
    for match in _VARIABLE_KEY.finditer(data):
        end = _string_end(data, match.end(), len(data))
        if end < 0:
            break
        spans.append((match.group(1), match.end(), end))
    return spans


def _string_end(buf: bytes, start: int, stop: int) -> int:
    """Offset of the quote closing the JSON string body that starts at `start`, or -1."""
    end = buf.find(b'"', start, stop)
    while end > start and buf[end - 1] == 0x5C:
        run = end - 1
        while run > start and buf[run - 1] == 0x5C:
            run -= 1
        if (end - run) % 2 == 0:  # an even run of backslashes escapes itself, not the quote
            break
        end = buf.find(b'"', end + 1, stop)
    return end
