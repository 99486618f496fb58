"""What a response said, learned from a copy of its bytes: chat-completion semantics -> Observation.

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
misses every template and is parsed in full. Templates live in `proxy.templates`; the events of
a piece are matched where they lie in it, without the decoder's copies (see `_walk`).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from proxy.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder
from proxy.templates import Template

__all__ = [
    "COMPLETION",
    "FILTER_CATEGORIES",
    "OTHER",
    "PROMPT",
    "Observation",
    "Stage",
    "StreamObserver",
    "Usage",
    "content_filter_events",
    "observe_json",
]

Stage = Literal["prompt", "completion"]
PROMPT: Final = "prompt"
COMPLETION: Final = "completion"

# Content-filter categories Azure documents; any other flagged name is reported as OTHER so the
# metric label set stays closed.
FILTER_CATEGORIES: Final = frozenset(
    {
        "hate",
        "sexual",
        "violence",
        "self_harm",
        "jailbreak",
        "protected_material_text",
        "protected_material_code",
        "profanity",
        "custom_blocklists",
        "indirect_attack",
    }
)
OTHER: Final = "other"
_LF: Final = 0x0A

# Responses API stream events that carry generated output.
_RESPONSES_OUTPUT_EVENTS: Final = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
    }
)


@dataclass(slots=True)
class Usage:
    """Token counts as reported by Azure (chat, Responses or embeddings shape)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens served from the prompt cache (`prompt_tokens_details.cached_tokens`)."""
    reasoning_tokens: int = 0
    """Reasoning tokens, already included in `completion_tokens`."""


@dataclass(slots=True)
class Observation:
    """What the proxy learned about one response."""

    first_token_at: float | None = None
    """clock() at the first piece holding output: a non-empty `delta.content` or
    `delta.refusal`, or a tool-call delta, in any choice (or a Responses API output delta)."""
    last_token_at: float | None = None
    """clock() at the last such piece."""
    content_events: int = 0
    """Choice deltas that carried output; an estimate of completion tokens when there is no
    usage. For a JSON body: choices whose message carried output."""
    finish_reasons: dict[int, str] = field(default_factory=dict)
    """Choice index -> non-null finish_reason. A later reason replaces an earlier one, except
    that "content_filter" (which async-filter annotation chunks send after "stop") sticks."""
    choices_seen: set[int] = field(default_factory=set)
    """Choice indices seen with a delta (or message). One without a finish reason at the end
    was cut off: see `incomplete_choices`."""
    filter_categories: dict[str, set[str]] = field(default_factory=dict)
    """Stage ("prompt"/"completion") -> categories reported with "filtered": true."""
    choice_filter_categories: dict[int, set[str]] = field(default_factory=dict)
    """Choice index -> its flagged completion categories (the per-choice view of the above)."""
    usage: Usage | None = None
    """The last non-null usage object seen."""
    error_code: str | None = None
    """`error.code` of an error event or body (as a string), "error" when it has none."""
    done: bool = False
    """`data: [DONE]` was seen; later events are counted but not interpreted, like clients do."""
    events: int = 0
    """SSE events dispatched (1 for a parsed JSON body)."""
    parse_errors: int = 0
    """Events (or bodies) that were not a JSON object."""
    oversized_events: int = 0
    """Events over max_event_bytes, skipped unread (1 for a JSON body over max_bytes)."""

    @property
    def incomplete_choices(self) -> set[int]:
        """Choices that produced a delta but never a finish reason."""
        return self.choices_seen - self.finish_reasons.keys()


def content_filter_events(obs: Observation) -> list[tuple[Stage, str]]:
    """The content-filter blocks to count for one finished response.

    One (completion, category) per flagged category of each choice that finished with
    "content_filter" ("other" when Azure flagged none), and one (prompt, category) per flagged
    category of a `content_filter` error (the 400 prompt block).
    """
    found: list[tuple[Stage, str]] = []
    for index, reason in sorted(obs.finish_reasons.items()):
        if reason == "content_filter":
            categories = obs.choice_filter_categories.get(index) or {OTHER}
            found.extend((COMPLETION, category) for category in sorted(categories))
    if obs.error_code == "content_filter":
        categories = obs.filter_categories.get(PROMPT) or {OTHER}
        found.extend((PROMPT, category) for category in sorted(categories))
    return found


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
    ) -> None:
        """`fast_path=False` hands every piece to the decoder and parses every event in full
        (tests compare the two paths)."""
        self.observation = Observation()
        self._clock = clock
        self._decoder = SSEDecoder(max_event_bytes)
        self._max_event = max_event_bytes
        self._max_piece = max_event_bytes + 2  # one event plus its blank line
        self._fast_path = fast_path
        self._templates: list[Template] = []
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
        outputs = _apply(obs, obj)
        obs.content_events += outputs
        if outputs and self._may_learn() and _is_plain(obj):
            template = Template.learn(data, outputs, self._MAX_TEMPLATE_BYTES)
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


def _is_plain(obj: dict[str, Any]) -> bool:
    """Is a chunk's only effect output on its choices? Only such a chunk can be a template:
    one of its shape must mean the same whatever its variable strings say."""
    scratch = Observation()
    _apply(scratch, obj)
    return scratch == Observation(choices_seen=scratch.choices_seen)


def _apply(obs: Observation, obj: dict[str, Any]) -> int:
    """Record what one JSON object (chunk or body) says; return the choice deltas with output.

    Templates rely on this: a string under a "content", "arguments" or "obfuscation" key is
    read only as delta/message content, and only for being non-empty.
    """
    error = obj.get("error")
    if error:  # openai-python raises on any truthy "error", so do we count it
        _record_error(obs, error)
    for key in ("prompt_filter_results", "prompt_annotations"):  # 2023 samples use the latter
        entries = obj.get(key)
        if entries and isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, dict):
                    _add_categories(obs, PROMPT, _flagged_entry(entry))
    raw_usage = obj.get("usage")
    usage = _usage(raw_usage) if raw_usage is not None else None
    response = obj.get("response")  # Responses API stream events wrap the response object
    if isinstance(response, dict):
        usage = usage or _usage(response.get("usage"))
        if response.get("error"):
            _record_error(obs, response["error"])
    if usage is not None:
        obs.usage = usage
    outputs = 0
    choices = obj.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict):
            outputs += _apply_choice(obs, choice)
    kind = obj.get("type")
    if isinstance(kind, str):
        outputs += _apply_responses_event(obs, kind, obj)
    return outputs


def _apply_choice(obs: Observation, choice: dict[str, Any]) -> int:
    index = choice.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool):
        return 0
    categories = _flagged_entry(choice)
    if categories:
        obs.choice_filter_categories.setdefault(index, set()).update(categories)
        _add_categories(obs, COMPLETION, categories)
    reason = choice.get("finish_reason")
    if isinstance(reason, str) and reason and obs.finish_reasons.get(index) != "content_filter":
        obs.finish_reasons[index] = reason
    # Async-filter annotation chunks have no "delta": they carry verdicts, not output.
    body = choice.get("delta")
    if not isinstance(body, dict):
        body = choice.get("message")  # non-stream body
    if isinstance(body, dict):
        obs.choices_seen.add(index)
        return 1 if _carries_output(body) else 0
    text = choice.get("text")  # legacy /completions
    if isinstance(text, str):
        obs.choices_seen.add(index)
        return 1 if text else 0
    return 0


def _carries_output(body: dict[str, Any]) -> bool:
    content = body.get("content")
    if content and isinstance(content, str):
        return True
    refusal = body.get("refusal")
    if refusal and isinstance(refusal, str):
        return True
    calls = body.get("tool_calls")
    function_call = body.get("function_call")  # deprecated single-function form
    return (isinstance(calls, list) and bool(calls)) or (
        isinstance(function_call, dict) and bool(function_call)
    )


def _apply_responses_event(obs: Observation, kind: str, obj: dict[str, Any]) -> int:
    if kind == "error":  # Responses API stream error: code sits at top level
        code = obj.get("code")
        obs.error_code = str(code) if code not in (None, "") else "error"
        return 0
    delta = obj.get("delta")
    return 1 if kind in _RESPONSES_OUTPUT_EVENTS and isinstance(delta, str) and delta else 0


def _record_error(obs: Observation, error: Any) -> None:
    code = error.get("code") if isinstance(error, dict) else None
    obs.error_code = str(code) if code not in (None, "") else "error"
    categories: set[str] = set()
    # The live service says "innererror" and "content_filter_result" (singular); the spec
    # says "inner_error" and "content_filter_results". Accept both.
    inner = (
        (error.get("innererror") or error.get("inner_error")) if isinstance(error, dict) else None
    )
    if isinstance(inner, dict):
        categories = _flagged_entry(inner)
    if obs.error_code == "content_filter" and not categories:
        categories = {OTHER}
    _add_categories(obs, PROMPT, categories)


def _flagged_entry(entry: dict[str, Any]) -> set[str]:
    """Flagged categories of an object holding content_filter_result(s); both spellings occur
    (the singular one carries the filter's own "error" on choices)."""
    found = _flagged(entry.get("content_filter_results"))
    single = entry.get("content_filter_result")
    return found | _flagged(single) if single is not None else found


def _flagged(results: Any) -> set[str]:
    found: set[str] = set()
    if not isinstance(results, dict):
        return found
    for name, verdict in results.items():
        if name != "error" and _is_filtered(verdict):
            found.add(name if name in FILTER_CATEGORIES else OTHER)
    return found


def _is_filtered(verdict: Any) -> bool:
    """`{"filtered": true, ...}`; custom_blocklists also comes as a list of `{filtered, id}` or
    as `{"filtered": .., "details": [{filtered, id}, ...]}`."""
    if isinstance(verdict, dict):
        if verdict.get("filtered") is True:
            return True
        details = verdict.get("details")
        return details is not None and _is_filtered(details)
    return isinstance(verdict, list) and any(_is_filtered(item) for item in verdict)


def _add_categories(obs: Observation, stage: Stage, categories: set[str]) -> None:
    if categories:
        obs.filter_categories.setdefault(stage, set()).update(categories)


def _usage(raw: Any) -> Usage | None:
    """Chat/embeddings usage, or the Responses API shape (input_/output_tokens)."""
    if not isinstance(raw, dict):
        return None  # absent, or "usage": null on every chunk but the last
    if "input_tokens" in raw or "output_tokens" in raw:
        return Usage(
            prompt_tokens=_count(raw.get("input_tokens")),
            completion_tokens=_count(raw.get("output_tokens")),
            cached_tokens=_detail(raw, "input_tokens_details", "cached_tokens"),
            reasoning_tokens=_detail(raw, "output_tokens_details", "reasoning_tokens"),
        )
    return Usage(
        prompt_tokens=_count(raw.get("prompt_tokens")),
        completion_tokens=_count(raw.get("completion_tokens")),
        cached_tokens=_detail(raw, "prompt_tokens_details", "cached_tokens"),
        reasoning_tokens=_detail(raw, "completion_tokens_details", "reasoning_tokens"),
    )


def _detail(raw: dict[str, Any], details: str, key: str) -> int:
    inner = raw.get(details)  # missing or null on older api-versions
    return _count(inner.get(key)) if isinstance(inner, dict) else 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def observe_json(
    body: bytes, content_encoding: str | None = None, *, max_bytes: int = 8 << 20
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
        obs.content_events = _apply(obs, obj)
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
