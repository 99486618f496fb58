"""What one Responses API JSON object says (a stream event or a whole body), as an Observation.

The wire facts are in docs/responses-wire.md. Events are read by their JSON `type` (an `event:`
line never changes the meaning). A response is one "choice" (index 0) with one finish reason,
mapped from how it ended:

| how the response ended                                   | finish_reason    |
|----------------------------------------------------------|------------------|
| `completed`                                              | `stop`           |
| `completed`, its output holds a `function_call` item     | `tool_calls`     |
| `incomplete`, `max_output_tokens`                        | `length`         |
| `incomplete`, `content_filter`                           | `content_filter` |
| an `error` with code `content_policy_violation` (the kill after `response.failed`) | `content_filter` |
| any other `failed`, `incomplete` or `cancelled`          | `incomplete`     |
| a stream that ends without any of these                  | (none: the metrics count it `incomplete`) |

`content_filter` sticks: Azure's kill sends `response.failed` first and its reason only in the
`error` frame after it. Usage comes from whichever object carries it (the terminal event of a
stream: completed, incomplete or failed; the body of a non-stream response). Content-filter
verdicts come from `content_filters[]`: `source_type` says the stage, `content_filter_results`
the categories. Output is a non-empty output-text, refusal or function-call-arguments delta;
reasoning summaries and lifecycle events are not.
"""

from __future__ import annotations

from typing import Any, Final

from proxy.observe.responses_templates import DELTA_KEYS, ResponsesTemplate
from proxy.observe.semantics import (
    COMPLETION,
    PROMPT,
    Observation,
    Stage,
    add_categories,
    flagged,
    read_usage,
)

__all__ = ["OUTPUT_DELTAS", "RESPONSES", "ResponsesSemantics", "apply_responses_object"]

OUTPUT_DELTAS: Final = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
    }
)
"""Stream events whose non-empty `delta` is output (time to first token starts at one)."""
_REASONING_DELTAS: Final = frozenset(
    {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)
_KILL_CODE: Final = "content_policy_violation"
_CONTENT_FILTER: Final = "content_filter"
_INCOMPLETE: Final = "incomplete"
_INCOMPLETE_REASONS: Final = {"max_output_tokens": "length", "content_filter": "content_filter"}
_CHOICE: Final = 0  # a response is one choice


def apply_responses_object(obs: Observation, obj: dict[str, Any]) -> int:
    """Record what one stream event or body says; return its deltas with output (0 or 1)."""
    kind = obj.get("type")
    if not isinstance(kind, str):
        kind = None  # a malformed event: read what else it says
    error = obj.get("error")
    if error or kind == "error":
        # openai-python raises on any truthy top-level "error"; the `error` event's code sits
        # in a nested object as really sent, at top level in the SDK's type: accept both.
        _record_error(obs, error if isinstance(error, dict) else obj, obj)
    response = obj.get("response")  # lifecycle events wrap the Response object
    if isinstance(response, dict):
        _apply_response(obs, response)
    elif obj.get("object") == "response" or "status" in obj:
        _apply_response(obs, obj)  # a non-stream body
    if kind in OUTPUT_DELTAS:
        delta = obj.get("delta")
        return 1 if isinstance(delta, str) and delta else 0
    return 0


def _apply_response(obs: Observation, response: dict[str, Any]) -> None:
    obs.choices_seen.add(_CHOICE)
    usage = read_usage(response.get("usage"), "input", "output")
    if usage is not None:
        obs.usage = usage
    error = response.get("error")
    if error:
        _record_error(obs, error, response)
    _record_filters(obs, response.get("content_filters"), COMPLETION)
    reason = _finish_reason(obs, response)
    if reason is not None:
        _finish(obs, reason)


def _finish_reason(obs: Observation, response: dict[str, Any]) -> str | None:
    status = response.get("status")
    if status == "completed":
        return "tool_calls" if _has_function_call(response.get("output")) else "stop"
    if status == "incomplete":
        details = response.get("incomplete_details")
        why = details.get("reason") if isinstance(details, dict) else None
        return _INCOMPLETE_REASONS.get(why, _INCOMPLETE) if isinstance(why, str) else _INCOMPLETE
    if status == "failed":
        return _CONTENT_FILTER if obs.error_code == _KILL_CODE else _INCOMPLETE
    if status == "cancelled":
        return _INCOMPLETE
    return None  # queued, in_progress: not over yet


def _finish(obs: Observation, reason: str) -> None:
    """One finish reason per response; `content_filter` is never replaced."""
    if obs.finish_reasons.get(_CHOICE) != _CONTENT_FILTER:
        obs.finish_reasons[_CHOICE] = reason


def _has_function_call(output: Any) -> bool:
    return isinstance(output, list) and any(
        isinstance(item, dict) and item.get("type") == "function_call" for item in output
    )


def _record_error(obs: Observation, error: Any, holder: dict[str, Any]) -> None:
    """`error` is what the object says the error is (anything, in a malformed one)."""
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    obs.error_code = str(code) if isinstance(code, str | int) and code != "" else "error"
    if obs.error_code == _KILL_CODE:
        obs.choices_seen.add(_CHOICE)
        _finish(obs, _CONTENT_FILTER)
    # A 400 prompt block carries its verdicts in `content_filters[]`, in the error object or
    # next to it.
    for where in (error, holder):
        _record_filters(obs, where.get("content_filters"), PROMPT)


def _record_filters(obs: Observation, filters: Any, default_stage: Stage) -> None:
    """Flagged categories of each `content_filters[]` entry, under its `source_type`."""
    if not isinstance(filters, list):
        return  # absent, or null as in stream events
    for entry in filters:
        if not isinstance(entry, dict):
            continue
        source = entry.get("source_type")
        stage: Stage = PROMPT if source == PROMPT else COMPLETION if source == COMPLETION \
            else default_stage
        categories = flagged(entry.get("content_filter_results"))
        if categories:
            add_categories(obs, stage, categories)
            if stage == COMPLETION:
                obs.choice_filter_categories.setdefault(_CHOICE, set()).update(categories)


class ResponsesSemantics:
    """The Responses API for the observer. Delta events (output text, refusal, function-call
    arguments, reasoning text) are nearly all of a long stream; one whose members are only
    the delta's own (`type`, `sequence_number`, ids, indices, `delta`, empty `logprobs`) may
    become a template, which varies its `sequence_number`, `delta` and `obfuscation`."""

    named_events = True

    def apply(self, obs: Observation, obj: dict[str, Any]) -> int:
        return apply_responses_object(obs, obj)

    def learnable(self, obj: dict[str, Any], outputs: int) -> bool:
        kind = obj.get("type")
        return (outputs > 0 or (isinstance(kind, str) and kind in _REASONING_DELTAS)) \
            and _is_plain_delta(obj)

    def template(self, data: bytes, obj: dict[str, Any], outputs: int,
                 max_bytes: int) -> ResponsesTemplate | None:
        return ResponsesTemplate.learn(data, obj, outputs, max_bytes)


def _is_plain_delta(obj: dict[str, Any]) -> bool:
    """Only the delta's own members, each a string, an integer, null or an empty list: an
    event of that shape means the same whatever its variable members say."""
    for key, value in obj.items():
        if key not in DELTA_KEYS:
            return False
        if not (value is None or isinstance(value, str | int) or value == []):
            return False
    return isinstance(obj.get("delta"), str)


RESPONSES: Final = ResponsesSemantics()
