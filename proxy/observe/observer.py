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
    """Observes one SSE response, piece by piece.

    No bound method of its own is stored on it (nor on its framer): that would be a reference
    cycle, and each finished stream's observer would wait for the cyclic collector, which a
    serving process runs rarely (`proxy/runtime/process_tuning.py`)."""

    __slots__ = ("_between", "_clock", "_fast_path", "_framer", "_full_parses",
                 "_learn_attempts", "_max_framed", "_named", "_semantics", "_templates",
                 "observation")

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
        self._named = semantics.named_events
        self._clock = clock
        self._framer = Framer(max_event_bytes, named=semantics.named_events)
        self._max_framed = max_event_bytes + 2  # an event within the limit and its "\n\n"
        self._between = False  # the framer is idle (it changes only when fed or reset)
        self._fast_path = fast_path
        self._templates: list[EventTemplate] = []
        self._full_parses = 0
        self._learn_attempts = 0

    def feed(self, data: bytes) -> None:
        """Take one piece of the response. A malformed event is counted, never raised; an
        exception out of here is a bug, which the tap (`proxy.observe.tap`) contains.

        The hot path, inline: a piece that is one whole event matching a template (most
        pieces of a stream not under load), proved so by the template's `framed_at` match
        alone, with the framer idle: no framing, no slicing, one match."""
        if self._between:
            for template in self._templates:
                m = template.framed_at(data)
                if m is not None and m.groups() == template.framed_fixed:
                    end = m.end()
                    if end > self._max_framed:
                        break  # oversized: the framer skips and counts it
                    if end != len(data):
                        self._feed_rest(data, end, template.deltas)
                        return
                    obs = self.observation
                    obs.events += 1
                    deltas = template.deltas
                    if deltas:
                        obs.output_deltas += deltas
                        now = self._clock()
                        if obs.first_token_at is None:
                            obs.first_token_at = now
                        obs.last_token_at = now
                    return
        self._feed_rest(data, 0, 0)

    def _feed_rest(self, data: bytes, pos: int, outputs: int) -> None:
        """`feed` past its hot path: `data[:pos]` is one template hit with `outputs` deltas
        (pos > 0), which more may follow; whatever is not a hit is framed."""
        obs = self.observation
        if pos:
            obs.events += 1
            obs.output_deltas += outputs
            pos, more = self._walk(data, pos)
            outputs += more
            data = data[pos:] if pos < len(data) else b""
        else:
            end = self._framer.single(data)
            if end >= 0:  # one event, no template's
                outputs = self._span(data, 0, end)
                data = b""
        if data:
            framer = self._framer
            frames = framer.frame(data)
            if frames.spans:
                outputs += self._framed_spans(frames.data, frames.spans)
            obs.oversized_events = framer.oversized
            self._between = framer.idle
        if outputs:
            now = self._clock()
            if obs.first_token_at is None:
                obs.first_token_at = now
            obs.last_token_at = now

    def close(self) -> Observation:
        """End of stream: an unterminated last event is dropped (as clients do)."""
        self._framer.reset()
        self._between = False
        self.release()
        return self.observation

    def release(self) -> None:
        """Let go of the learned templates, so nothing of this stream waits for the cyclic
        collector (`Template.release`). No more events are matched by template after it."""
        for template in self._templates:
            template.release()
        self._templates.clear()

    def _walk(self, data: bytes, pos: int) -> tuple[int, int]:
        """How far the piece is, from `pos` (the end of a template hit), whole events each
        matching a template by `framed_at`, and their deltas (counted). A hit proves its
        event is exactly what the idle framer would find there (`EventTemplate.framed`);
        the framer, idle, takes whatever follows as it would have after them."""
        templates = self._templates
        n = len(data)
        limit = self._max_framed
        hits = deltas = 0
        while pos < n:
            for template in templates:
                m = template.framed_at(data, pos)
                if m is not None and m.groups() == template.framed_fixed:
                    break
            else:
                break
            end = m.end()
            if end - pos > limit:
                break
            hits += 1
            deltas += template.deltas
            pos = end
        if hits:
            obs = self.observation
            obs.events += hits
            obs.output_deltas += deltas
        return pos, deltas

    def _framed_spans(self, buf: bytes, spans: list[Span]) -> int:
        """Interpret the events of one piece as framed: template hits (`framed`, which takes
        the event with its "\\n\\n") are tried inline and counted together, the rest go to
        `_span` (any other line ending is matched there)."""
        obs = self.observation
        templates = self._templates  # changed in place only: the loop sees every change
        outputs = hits = hit_deltas = 0
        for start, body_end, end in spans:
            for template in templates:
                m = template.framed(buf, start, end)
                if m is not None and m.groups() == template.framed_fixed:
                    hits += 1
                    hit_deltas += template.deltas
                    break
            else:
                if hits:  # counted before anything is parsed: learning is budgeted by hits
                    obs.events += hits
                    obs.output_deltas += hit_deltas
                    outputs += hit_deltas
                    hits = hit_deltas = 0
                outputs += self._span(buf, start, body_end)
        obs.events += hits
        obs.output_deltas += hit_deltas
        return outputs + hit_deltas

    def _span(self, buf: bytes, start: int, body_end: int) -> int:
        if self._named:
            return self._named_span(buf, start, body_end)
        return self._data_span(buf, start, body_end)

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
            self.release()  # so nothing after it matches one
            return 0
        return self._parse(data)

    def _parse(self, data: bytes) -> int:
        obs = self.observation
        self._full_parses += 1
        try:
            obj = loads(data)
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
                templates = self._templates
                templates.insert(0, template)
                if len(templates) > self._MAX_TEMPLATES:
                    templates.pop().release()
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
    if not content_encoding:
        return body  # the usual answer: nothing to undo
    codings = [c.strip().lower() for c in content_encoding.split(",")]
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
