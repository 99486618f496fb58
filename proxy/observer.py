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
misses every template and is parsed in full.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from proxy.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent

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
        """`fast_path=False` parses every event in full (tests compare the two paths)."""
        self.observation = Observation()
        self._clock = clock
        self._decoder = SSEDecoder(max_event_bytes)
        self._max_piece = max_event_bytes + 2  # one event plus its blank line
        self._fast_path = fast_path
        self._templates: list[_Template] = []
        # Mirrors self._decoder.idle after each feed (a property call costs on every piece).
        self._idle = False
        self._full_parses = 0
        self._learn_attempts = 0

    def feed(self, data: bytes) -> None:
        """Take one piece of the response. Never raises."""
        obs = self.observation
        try:
            n = len(data)
            # While the decoder holds nothing, a piece whose only "\n" is the second-to-last
            # byte and that has no "\r" is exactly one event: a template can be tried on it as
            # it stands (templates start with "data: " and end with "\n\n").
            if (
                self._idle
                and n <= self._max_piece
                and data.find(b"\n") == n - 2
                and data.find(b"\r") < 0
            ):
                for template in self._templates:
                    if template.matches(data, n):
                        obs.events += 1
                        obs.content_events += template.deltas
                        now = self._clock()
                        if obs.first_token_at is None:
                            obs.first_token_at = now
                        obs.last_token_at = now
                        return
            self._feed_decoder(data)
        except Exception:  # noqa: BLE001 - an observer bug must never break the byte flow
            obs.parse_errors += 1

    def close(self) -> Observation:
        """End of stream: an unterminated last event is dropped (as clients do)."""
        try:
            self._decoder.flush()
        except Exception:  # noqa: BLE001 - see feed()
            self.observation.parse_errors += 1
        return self.observation

    def _feed_decoder(self, data: bytes) -> None:
        obs = self.observation
        try:
            events = self._decoder.feed(data)
        finally:
            self._idle = self._decoder.idle
            obs.oversized_events = self._decoder.oversized
        outputs = 0
        for event in events:
            try:
                outputs += self._event(event)
            except Exception:  # noqa: BLE001 - one bad event must not hide the others
                obs.parse_errors += 1
        if outputs:
            now = self._clock()
            if obs.first_token_at is None:
                obs.first_token_at = now
            obs.last_token_at = now

    def _event(self, event: SSEEvent) -> int:
        """Interpret one event; return how many choice deltas carried output."""
        obs = self.observation
        obs.events += 1
        if obs.done:
            return 0
        data = event.data
        if data.startswith(b"[DONE]"):  # openai-python's test: a prefix match
            obs.done = True
            self._templates.clear()
            return 0
        if self._templates:
            # Several events in one piece, or one cut across pieces: rebuild the piece form.
            piece = b"data: " + data + b"\n\n"
            for template in self._templates:
                if template.matches(piece, len(piece)):
                    obs.content_events += template.deltas
                    return template.deltas
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
        if outputs and self._may_learn():
            template = _Template.learn(data, obj, self._MAX_TEMPLATE_BYTES)
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


# A key whose string value may vary between chunks of the same shape.
_VARIABLE_KEY = re.compile(rb'"(content|arguments|obfuscation)"[ \t\r\n]*:[ \t\r\n]*"')


class _Template:
    """A fully parsed content chunk, as a whole `data: ...\n\n` piece with its variable
    strings cut out.

    `head S1 fixed S2 ... fixed`: each S is the body of a JSON string (between its quotes). A
    piece matching it differs from the learned one only inside those strings, so its JSON
    parses to the same structure with other string values. The learned chunk was "plain" (its
    only effect was output on its choices), and that effect depends on these strings only
    through `delta.content` being non-empty, which matching demands. The string bodies
    themselves are not validated: a malformed escape or a raw control byte inside one is
    counted as output rather than as a parse error.
    """

    __slots__ = ("deltas", "head", "head_len", "steps")

    def __init__(self, fixed: list[bytes], nonempty: list[bool], deltas: int) -> None:
        pieces = [b"data: " + fixed[0], *fixed[1:]]
        pieces[-1] += b"\n\n"
        self.head = pieces[0]
        self.head_len = len(self.head)
        # (text after string i, its length, string i must be non-empty)
        self.steps = tuple(zip(pieces[1:], map(len, pieces[1:]), nonempty, strict=True))
        self.deltas = deltas

    def matches(self, piece: bytes, n: int) -> bool:
        """Does piece (of length n) match? Runs on most pieces of a stream: kept lean."""
        if not piece.startswith(self.head):
            return False
        pos = self.head_len
        for fixed, fixed_len, nonempty in self.steps:
            end = piece.find(b'"', pos)
            if end > pos and piece[end - 1] == 0x5C:  # a backslash: maybe an escaped quote
                end = _string_end(piece, pos, n)
            if end < 0 or (nonempty and end == pos) or not piece.startswith(fixed, end):
                return False
            pos = end + fixed_len
        return pos == n

    @classmethod
    def learn(cls, data: bytes, obj: dict[str, Any], max_bytes: int) -> _Template | None:
        """A template from a parsed chunk, or None when it is not a plain output chunk.

        Every `"content"`, `"arguments"` or `"obfuscation"` string becomes variable, wherever it
        sits: `_apply` reads such a string only as a delta's (or message's) content and only for
        being non-empty, so a "content" string must stay non-empty and the others may be
        anything. (A regex hit is a real key and value here: its closing quote is unescaped and
        followed by a colon, and the chunk parsed as JSON.)
        """
        if len(data) > max_bytes or b"\n" in data or b"\r" in data:
            return None
        scratch = Observation()
        deltas = _apply(scratch, obj)
        if not deltas or scratch != Observation(choices_seen=scratch.choices_seen):
            return None
        fixed: list[bytes] = []
        nonempty: list[bool] = []
        cursor = 0
        for key, start, end in _string_spans(data):
            fixed.append(data[cursor:start])
            nonempty.append(key == b"content")
            cursor = end
        fixed.append(data[cursor:])
        return cls(fixed, nonempty, deltas)


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
