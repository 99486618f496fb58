"""What one chat-completion JSON object says (a stream chunk or a whole body), as an Observation.

The meanings come from Azure's wire format (docs/chat-wire.md §4-§8): usage in the chat and embeddings shapes, finish
reasons per choice (n > 1 too), `content_filter_results` flagged per category for the prompt and
each choice, and `error` objects. Legacy completions and embeddings are read here too. The
Responses API has its own module, `proxy.observe.responses`; both fill the same `Observation`.
`observer.py` decides which bytes to parse; this module only interprets what was parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from proxy.observe.templates import Template
from proxy.vocabulary import FILTER_CATEGORIES, OTHER

__all__ = [
    "CHAT",
    "COMPLETION",
    "FILTER_CATEGORIES",
    "OTHER",
    "PROMPT",
    "Observation",
    "Stage",
    "Usage",
    "add_categories",
    "apply_object",
    "content_filter_events",
    "flagged",
]

Stage = Literal["prompt", "completion"]
PROMPT: Final = "prompt"
COMPLETION: Final = "completion"


@dataclass(slots=True)
class Usage:
    """Token counts as reported by Azure (in the chat, Responses or embeddings shape)."""

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
    `delta.refusal`, or a tool-call delta, in any choice (for the Responses API: a non-empty
    output text, refusal or function-call arguments delta)."""
    last_token_at: float | None = None
    """clock() at the last such piece."""
    output_deltas: int = 0
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


def apply_object(obs: Observation, obj: dict[str, Any]) -> int:
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
                    add_categories(obs, PROMPT, _flagged_entry(entry))
    raw_usage = obj.get("usage")
    usage = read_usage(raw_usage, "prompt", "completion") if raw_usage is not None else None
    if usage is not None:
        obs.usage = usage
    outputs = 0
    choices = obj.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict):
            outputs += _apply_choice(obs, choice)
    return outputs


def _apply_choice(obs: Observation, choice: dict[str, Any]) -> int:
    index = choice.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool):
        return 0
    categories = _flagged_entry(choice)
    if categories:
        obs.choice_filter_categories.setdefault(index, set()).update(categories)
        add_categories(obs, COMPLETION, categories)
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
    add_categories(obs, PROMPT, categories)


def _flagged_entry(entry: dict[str, Any]) -> set[str]:
    """Flagged categories of an object holding content_filter_result(s); both spellings occur
    (the singular one carries the filter's own "error" on choices)."""
    found = flagged(entry.get("content_filter_results"))
    single = entry.get("content_filter_result")
    return found | flagged(single) if single is not None else found


def flagged(results: Any) -> set[str]:
    """Categories a `content_filter_results` object marks `filtered: true` (unknown names as
    OTHER)."""
    found: set[str] = set()
    if not isinstance(results, dict):
        return found
    for name, verdict in results.items():
        # The usual verdict, `{"filtered": false, "severity": ...}`, without a call.
        if type(verdict) is dict and verdict.get("filtered") is False \
                and "details" not in verdict:
            continue
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


def add_categories(obs: Observation, stage: Stage, categories: set[str]) -> None:
    if categories:
        obs.filter_categories.setdefault(stage, set()).update(categories)


def read_usage(raw: Any, prompt: str, completion: str) -> Usage | None:
    """`{P_tokens, P_tokens_details: {cached_tokens}, C_tokens, C_tokens_details:
    {reasoning_tokens}}` with P, C = `prompt`, `completion` (chat, embeddings) or `input`,
    `output` (Responses API); the details may be missing or null (older api-versions)."""
    if not isinstance(raw, dict):
        return None  # absent, or null on every chunk / event but the last
    return Usage(
        prompt_tokens=_count(raw.get(f"{prompt}_tokens")),
        completion_tokens=_count(raw.get(f"{completion}_tokens")),
        cached_tokens=_detail(raw, f"{prompt}_tokens_details", "cached_tokens"),
        reasoning_tokens=_detail(raw, f"{completion}_tokens_details", "reasoning_tokens"),
    )


def _detail(raw: dict[str, Any], details: str, key: str) -> int:
    inner = raw.get(details)
    return _count(inner.get(key)) if isinstance(inner, dict) else 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class ChatSemantics:
    """Chat completions (and legacy completions, embeddings) for the observer: an ordinary
    content chunk, whose only effect is output on its choices, may become a template."""

    named_events = False

    def apply(self, obs: Observation, obj: dict[str, Any]) -> int:
        return apply_object(obs, obj)

    def learnable(self, obj: dict[str, Any], outputs: int) -> bool:
        return outputs > 0

    def template(self, data: bytes, obj: dict[str, Any], outputs: int,
                 max_bytes: int) -> Template | None:
        return Template.learn(data, outputs, max_bytes) if _is_plain(obj) else None


def _is_plain(obj: dict[str, Any]) -> bool:
    """Is a chunk's only effect output on its choices? Only such a chunk can be a template:
    one of its shape must mean the same whatever its variable strings say."""
    scratch = Observation()
    apply_object(scratch, obj)
    return scratch == Observation(choices_seen=scratch.choices_seen)


CHAT: Final = ChatSemantics()
