"""What a response said, learned from a copy of its bytes -> Observation.

`StreamObserver` is fed each piece of an SSE response right after the proxy wrote it to the
client; `observe_json` reads a whole non-stream body. Neither ever raises: a malformed event is
counted in `parse_errors` and the bytes keep flowing.

Cost matters: the proxy has ~15 us of CPU per forwarded piece and a full `json.loads` of one
Azure content chunk takes several of them. So a stream's ordinary content chunks take a fast
path: after one has been parsed in full, its bytes are kept as a *template* with the strings
that vary from chunk to chunk (`delta.content`, tool-call `arguments`, `obfuscation`) cut out;
a later chunk whose bytes equal the template outside those strings is, by construction, the same
JSON with other string values, so it means the same thing and is counted without parsing. The
template is learned from the bytes actually seen, so it follows any key order or whitespace.
Anything else (first chunks, finish, usage, filter verdicts, errors, a changed verdict block)
misses every template and is parsed in full. Templates live in `proxy.observe.templates`; the events of
a piece are matched where they lie in it, without the decoder's copies (see `_walk`).

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

from proxy.observe.reading import EventTemplate, Semantics
from proxy.observe.semantics import CHAT, Observation
from proxy.observe.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder

__all__ = ["StreamObserver", "observe_json"]

_LF: Final = 0x0A


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
        """`fast_path=False` hands every piece to the decoder and parses every event in full
        (tests compare the two paths)."""
        self.observation = Observation()
        self._semantics = semantics
        self._clock = clock
        self._decoder = SSEDecoder(max_event_bytes)
        self._max_event = max_event_bytes
        self._max_piece = max_event_bytes + 2  # one event plus its blank line
        self._fast_path = fast_path
        self._templates: list[EventTemplate] = []
        # The decoder is idle and fast_path is on: a piece without "\r" can be walked at once.
        # Updated after each decoder feed (a property call costs on every piece).
        self._walkable = False
        self._full_parses = 0
        self._learn_attempts = 0

    def feed(self, data: bytes) -> None:
        """Take one piece of the response. Never raises."""
        obs = self.observation
        try:
            if self._walkable and data.find(b"\r") < 0:
                outputs = self._walk(data, 0)
            else:
                outputs = self._take(data)
            if outputs:
                now = self._clock()
                if obs.first_token_at is None:
                    obs.first_token_at = now
                obs.last_token_at = now
        except Exception:  # noqa: BLE001 - an observer bug must never break the byte flow
            obs.parse_errors += 1

    def close(self) -> Observation:
        """End of stream: an unterminated last event is dropped (as clients do)."""
        try:
            self._decoder.flush()
        except Exception:  # noqa: BLE001 - see feed()
            self.observation.parse_errors += 1
        return self.observation

    def _take(self, data: bytes) -> int:
        """A piece that cannot be walked at once: the decoder holds the start of an event, or
        is in one of its rare states, or the piece has a "\\r", or fast_path is off."""
        # Walking pays when the piece ends more events than the held one; a second line break
        # a byte or more past the first is the quick sign (one-byte finds are memchr). Else one
        # decoder feed costs less than the two that walking takes.
        nl = data.find(b"\n") if self._fast_path else -1
        if nl >= 0 and data.find(b"\n", nl + 2) >= 0:
            pos = self._decoder.pending_end(data)
            if pos > 0 and data.find(b"\r", pos) < 0:
                return self._decode(data[:pos]) + self._walk(data, pos)
        return self._decode(data)

    def _walk(self, data: bytes, pos: int) -> int:
        """Interpret the events of `data` from `pos`, where the decoder (idle, and so
        `_walkable`) would start, and leave the incomplete tail with the decoder; return the
        choice deltas with output.

        Under load one piece carries many events, and the decoder's way (copy each event, then
        its data) costs more than matching a template. So the events are walked where they lie:
        each is tried on the templates (see `Template.event`), and only one that matches none
        takes the slower way. Without "\\r" in the piece, the decoder's framing is this simple:
        an event ends at each "\\n\\n".
        """
        obs = self.observation
        templates = self._templates
        limit = self._max_piece
        n = len(data)
        outputs = hits = hit_deltas = 0
        while pos < n:
            # The hot loop: runs for every ordinary content chunk of every stream.
            for template in templates:
                m = template.event(data, pos, pos + limit)
                if m is not None and m.groups() == template.fixed:
                    hits += 1
                    hit_deltas += template.deltas
                    pos = m.end()
                    break
            else:
                if hits:  # counted before anything is parsed: learning is budgeted by hits
                    obs.events += hits
                    obs.content_events += hit_deltas
                    outputs += hit_deltas
                    hits = hit_deltas = 0
                end, deltas = self._untemplated(data, pos)
                if end < 0:
                    return outputs + self._decode(data[pos:] if pos else data)
                pos = end
                outputs += deltas
        obs.events += hits
        obs.content_events += hit_deltas
        return outputs + hit_deltas

    def _untemplated(self, data: bytes, pos: int) -> tuple[int, int]:
        """Interpret the event at `pos`, which no template matched; return where it ends (-1
        when it is incomplete) and its deltas with output."""
        nl = data.find(b"\n", pos)
        if nl < 0 or nl + 1 == len(data):
            return -1, 0  # the next byte may or may not end the event
        if data[nl + 1] == _LF:
            if nl - pos <= self._max_event and data.startswith(b"data: ", pos):
                # One "data: " line: the decoder would dispatch the rest of it as it stands.
                self.observation.events += 1
                try:
                    return nl + 2, self._interpret(data[pos + 6 : nl])
                except Exception:  # noqa: BLE001 - as in _decode
                    self.observation.parse_errors += 1
                    return nl + 2, 0
            end = nl
        else:
            end = data.find(b"\n\n", nl + 1)
            if end < 0:
                return -1, 0
        # Comments, several lines, no space after "data:", oversized: the decoder's business.
        return end + 2, self._decode(data[pos : end + 2])

    def _decode(self, data: bytes) -> int:
        """Hand `data` to the decoder; interpret the events it completes."""
        obs = self.observation
        try:
            events = self._decoder.feed(data)
        finally:
            self._walkable = self._fast_path and self._decoder.idle
            obs.oversized_events = self._decoder.oversized
        outputs = 0
        for event in events:
            try:
                outputs += self._event(event.data)
            except Exception:  # noqa: BLE001 - one bad event must not hide the others
                obs.parse_errors += 1
        return outputs

    def _event(self, data: bytes) -> int:
        """Interpret one event's data; return how many choice deltas carried output."""
        self.observation.events += 1
        for template in self._templates:
            m = template.payload(data)
            if m is not None and m.groups() == template.fixed:
                self.observation.content_events += template.deltas
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
        except ValueError:  # also UnicodeDecodeError
            obs.parse_errors += 1
            return 0
        if not isinstance(obj, dict):
            obs.parse_errors += 1
            return 0
        semantics = self._semantics
        outputs = semantics.apply(obs, obj)
        obs.content_events += outputs
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
    """Observe a whole non-stream body (completion, embeddings, error). Never raises.

    `body` is the bytes as sent (the proxy forwards them compressed); gzip and deflate are
    undone on a copy. A body over `max_bytes`, before or after decompression, is not parsed.
    """
    obs = Observation()
    try:
        raw = _decode_body(body, content_encoding, max_bytes)
        if raw is None:
            obs.oversized_events = 1
            return obs
        obj = json.loads(raw)
    except Exception:  # noqa: BLE001 - garbage, truncated or unsupported bodies are counted
        obs.parse_errors = 1
        return obs
    obs.events = 1
    if not isinstance(obj, dict):
        obs.parse_errors = 1
        return obs
    try:
        obs.content_events = semantics.apply(obs, obj)
    except Exception:  # noqa: BLE001 - an observer bug must not fail the response
        obs.parse_errors = 1
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
