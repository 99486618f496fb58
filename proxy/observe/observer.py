"""What a response said, learned from a copy of its bytes -> Observation.

`StreamObserver` is fed each piece of an SSE response right after the proxy wrote it to the
client; `observe_json` reads a whole non-stream body. A malformed event or body is counted in
`parse_errors` and the bytes keep flowing; anything else raised is a bug, which the tap
(`proxy.observe.tap`) logs once and counts.

Events are framed by `proxy.observe.framing` and matched where they lie in the piece, without
copies. Cost matters (figures and the decision in bench/README.md, "Templates"), so a stream's
ordinary content chunks take a fast path: after one has been parsed in full, its bytes are kept
as a *template* with the strings that vary from chunk to chunk (`delta.content`, tool-call
`arguments`, `obfuscation`) cut out; a later chunk whose bytes equal the template outside those
strings is, by construction, the same JSON with other string values, so it means the same thing
and is counted without parsing. The template is learned from the bytes actually seen, so it
follows any key order or whitespace. Anything else (first chunks, finish, usage, filter
verdicts, errors, a changed verdict block) misses every template and is parsed in full.

What a parsed object means (usage, finish reasons, filter verdicts, errors) and which objects
may become templates is the API's `Semantics` (`proxy.observe.reading`): chat completions'
(`proxy.observe.semantics`, the default) or the Responses API's (`proxy.observe.responses`);
this module decides which bytes to parse and when.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from typing import Final

from proxy.jsonload import loads
from proxy.observe.framing import DEFAULT_MAX_EVENT_BYTES, Framer, Span
from proxy.observe.reading import EventTemplate, Semantics
from proxy.observe.semantics import CHAT, Observation
from proxy.observe.sse import parse_event

__all__ = ["StreamObserver", "observe_json"]

class StreamObserver:
    """Observes one SSE response, piece by piece."""

    _MAX_TEMPLATES: Final = 4  # enough for n=4 choices interleaving
    _MAX_TEMPLATE_BYTES: Final = 16 << 10

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.perf_counter,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        fast_path: bool = True,
        semantics: Semantics = CHAT,
    ) -> None:
        """`fast_path=False` parses every event in full (tests compare the two paths)."""
        self.observation = Observation()
        self._semantics = semantics
        self._span: Callable[[bytes, int, int], int] = (
            self._named_span if semantics.named_events else self._data_span)
        self._walk: Callable[[bytes], int] = (
            self._walk_named if semantics.named_events else self._walk_data)
        self._spans: Callable[[bytes, list[Span]], int] = (
            self._named_spans if semantics.named_events else self._data_spans)
        self._clock = clock
        self._framer = Framer(max_event_bytes, named=semantics.named_events)
        self._single = self._framer.single  # bound once: called for every piece
        self._limit = max_event_bytes
        self._fast_path = fast_path
        self._templates: list[EventTemplate] = []
        self._full_parses = 0
        self._learn_attempts = 0
        self._hits = 0  # the deltas of the last walk's template hits

    def feed(self, data: bytes) -> None:
        """Take one piece of the response. A malformed event is counted, never raised; an
        exception out of here is a bug, which the tap (`proxy.observe.tap`) contains."""
        obs = self.observation
        end = self._single(data)
        if end >= 0:
            outputs = self._span(data, 0, end)
        else:
            outputs = 0
            framer = self._framer
            if self._templates and framer.idle:
                # Whole template hits from the piece's start, framed by the templates' own
                # matches; the framer, idle, takes the rest as it would have after them.
                pos = self._walk(data)
                if pos:
                    outputs = self._hits
                    data = data[pos:]
            if data:
                frames = framer.feed(data)
                if frames.spans:
                    outputs += self._spans(frames.data, frames.spans)
                obs.oversized_events = framer.oversized
        if outputs:
            now = self._clock()
            if obs.first_token_at is None:
                obs.first_token_at = now
            obs.last_token_at = now

    def close(self) -> Observation:
        """End of stream: an unterminated last event is dropped (as clients do)."""
        self._framer.reset()
        return self.observation

    def _walk_data(self, data: bytes) -> int:
        """How far the piece is, from its start, one-line `data: ` events each matching a
        template and ended by "\\n\\n"; their deltas are counted (and left in `_hits`).
        A template's line match proves its event has no "\\r" or "\\n", so each of these
        events is exactly what the framer would find there."""
        templates = self._templates
        find = data.find
        n = len(data)
        limit = self._limit
        pos = hits = deltas = 0
        while True:
            end = find(b"\n", pos)
            if (end < 0 or end + 1 >= n or data[end + 1] != 0x0A or end - pos > limit
                    or not data.startswith(b"data: ", pos)):
                break
            for template in templates:
                m = template.line(data, pos + 6, end)
                if m is not None and m.groups() == template.fixed:
                    hits += 1
                    deltas += template.deltas
                    break
            else:
                break
            pos = end + 2
        if hits:
            obs = self.observation
            obs.events += hits
            obs.output_deltas += deltas
        self._hits = deltas
        return pos

    def _walk_named(self, data: bytes) -> int:
        """`_walk_data` for named events: an `event:` line and one `data:` line each, matched
        whole by a template (which proves there is no other line break in them)."""
        templates = self._templates
        find = data.find
        n = len(data)
        limit = self._limit
        pos = hits = deltas = 0
        while True:
            first = find(b"\n", pos)
            if first < 0:
                break
            end = find(b"\n", first + 1)
            if end < 0 or end + 1 >= n or data[end + 1] != 0x0A or end - pos > limit:
                break
            for template in templates:
                m = template.line(data, pos, end)
                if m is not None and m.groups() == template.line_fixed:
                    hits += 1
                    deltas += template.deltas
                    break
            else:
                break
            pos = end + 2
        if hits:
            obs = self.observation
            obs.events += hits
            obs.output_deltas += deltas
        self._hits = deltas
        return pos

    def _data_spans(self, buf: bytes, spans: list[Span]) -> int:
        """Interpret the events of one piece as framed: template hits are tried inline and
        counted together, the rest go to `_data_span`."""
        obs = self.observation
        templates = self._templates  # changed in place only: the loop sees every change
        outputs = hits = hit_deltas = 0
        for start, body_end, _ in spans:
            if buf.startswith(b"data: ", start):
                for template in templates:
                    m = template.line(buf, start + 6, body_end)
                    if m is not None and m.groups() == template.fixed:
                        hits += 1
                        hit_deltas += template.deltas
                        break
                else:
                    if hits:  # counted before anything is parsed: learning is budgeted by hits
                        obs.events += hits
                        obs.output_deltas += hit_deltas
                        outputs += hit_deltas
                        hits = hit_deltas = 0
                    outputs += self._data_span(buf, start, body_end)
            else:
                if hits:
                    obs.events += hits
                    obs.output_deltas += hit_deltas
                    outputs += hit_deltas
                    hits = hit_deltas = 0
                outputs += self._data_span(buf, start, body_end)
        obs.events += hits
        obs.output_deltas += hit_deltas
        return outputs + hit_deltas

    def _named_spans(self, buf: bytes, spans: list[Span]) -> int:
        """`_data_spans` for named events: a template's line matcher takes the whole event."""
        obs = self.observation
        templates = self._templates
        outputs = hits = hit_deltas = 0
        for start, body_end, _ in spans:
            for template in templates:
                m = template.line(buf, start, body_end)
                if m is not None and m.groups() == template.line_fixed:
                    hits += 1
                    hit_deltas += template.deltas
                    break
            else:
                if hits:
                    obs.events += hits
                    obs.output_deltas += hit_deltas
                    outputs += hit_deltas
                    hits = hit_deltas = 0
                outputs += self._data_span(buf, start, body_end)
        obs.events += hits
        obs.output_deltas += hit_deltas
        return outputs + hit_deltas

    def _data_span(self, buf: bytes, start: int, body_end: int) -> int:
        """Interpret the event framed at `buf[start:body_end]`; return its choice deltas with
        output. The hot path: every ordinary content chunk of every stream comes here."""
        obs = self.observation
        if buf.startswith(b"data: ", start):
            # A template's line matcher proves the event is that one "data: " line as well.
            for template in self._templates:
                m = template.line(buf, start + 6, body_end)
                if m is not None and m.groups() == template.fixed:
                    obs.events += 1
                    obs.output_deltas += template.deltas
                    return template.deltas
            if buf.find(b"\n", start, body_end) < 0 and buf.find(b"\r", start, body_end) < 0:
                obs.events += 1
                return self._interpret(buf[start + 6 : body_end])
        event = parse_event(buf, start, body_end)
        if event is None:
            return 0  # no data line: the spec dispatches nothing
        obs.events += 1
        return self._event(event.data)

    def _named_span(self, buf: bytes, start: int, body_end: int) -> int:
        """`_data_span` for an API whose events are named (the Responses API): its templates'
        line matcher takes the whole event, `event:` line and one `data:` line."""
        for template in self._templates:
            m = template.line(buf, start, body_end)
            if m is not None and m.groups() == template.line_fixed:
                obs = self.observation
                obs.events += 1
                obs.output_deltas += template.deltas
                return template.deltas
        return self._data_span(buf, start, body_end)

    def _event(self, data: bytes) -> int:
        """Interpret one event's data (its data lines joined)."""
        for template in self._templates:
            m = template.payload(data)
            if m is not None and m.groups() == template.fixed:
                self.observation.output_deltas += template.deltas
                return template.deltas
        return self._interpret(data)

    def _interpret(self, data: bytes) -> int:
        """An event's data that no template matched."""
        obs = self.observation
        if obs.done:
            return 0
        if data.startswith(b"[DONE]"):  # openai-python's test: a prefix match
            obs.done = True
            self._templates.clear()  # so nothing after it matches one
            return 0
        return self._parse(data)

    def _parse(self, data: bytes) -> int:
        obs = self.observation
        self._full_parses += 1
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):  # ValueError covers UnicodeDecodeError
            obs.parse_errors += 1
            return 0
        if not isinstance(obj, dict):
            obs.parse_errors += 1
            return 0
        semantics = self._semantics
        outputs = semantics.apply(obs, obj)
        obs.output_deltas += outputs
        if semantics.learnable(obj, outputs) and self._may_learn():
            template = semantics.template(data, obj, outputs, self._MAX_TEMPLATE_BYTES)
            if template is not None:
                self._templates.insert(0, template)
                del self._templates[self._MAX_TEMPLATES :]
        return outputs

    def _may_learn(self) -> bool:
        """Learning costs about as much as a full parse; keep at it only while templates pay
        off (a stream whose chunks all differ, e.g. in their verdict block, never gets a hit)."""
        if not self._fast_path:
            return False
        hits = self.observation.events - self._full_parses
        if self._learn_attempts > 4 + hits // 4:
            return False
        self._learn_attempts += 1
        return True


def observe_json(
    body: bytes, content_encoding: str | None = None, *, max_bytes: int = 8 << 20,
    semantics: Semantics = CHAT,
) -> Observation:
    """Observe a whole non-stream body (completion, embeddings, error). A body that cannot be
    read is counted, never raised; an exception out of here is a bug, for the tap to contain.

    `body` is the bytes as sent (the proxy forwards them compressed); gzip and deflate are
    undone on a copy. A body over `max_bytes`, before or after decompression, is not parsed.
    """
    obs = Observation()
    try:
        raw = _decode_body(body, content_encoding, max_bytes)
        if raw is None:
            obs.oversized_events = 1
            return obs
        obj = loads(raw)
    except (ValueError, RecursionError, zlib.error):  # garbage, truncated, unsupported
        obs.parse_errors = 1
        return obs
    obs.events = 1
    if not isinstance(obj, dict):
        obs.parse_errors = 1
        return obs
    obs.output_deltas = semantics.apply(obs, obj)
    return obs


def _decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes | None:
    if len(body) > max_bytes:
        return None
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    for coding in reversed(codings):  # listed in the order they were applied
        if coding in ("", "identity"):
            continue
        if coding in ("gzip", "x-gzip"):
            inflated = _inflate(body, 16 + zlib.MAX_WBITS, max_bytes)
        elif coding == "deflate":
            # HTTP "deflate" is zlib-wrapped, but some servers send raw deflate.
            try:
                inflated = _inflate(body, zlib.MAX_WBITS, max_bytes)
            except zlib.error:
                inflated = _inflate(body, -zlib.MAX_WBITS, max_bytes)
        else:
            raise ValueError(f"unsupported content-encoding {coding!r}")
        if inflated is None:
            return None
        body = inflated
    return body


def _inflate(data: bytes, wbits: int, max_bytes: int) -> bytes | None:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(data, max_bytes + 1)  # bounded: a small bomb stays small
    if len(out) > max_bytes:
        return None
    if not inflater.eof:
        raise ValueError("truncated compressed body")
    return out
