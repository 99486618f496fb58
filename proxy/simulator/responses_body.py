"""The Response object, its output items and Azure's ``content_filters`` (``docs/responses-wire.md``
§3, §5, §6): what a non-streaming answer is, and what lifecycle events carry."""

from __future__ import annotations

from typing import Any, Final

from .errors import SERVER_ERROR
from .responses_plan import Reply
from .wire import MESSAGE_CATEGORIES, PROMPT_CATEGORIES, filter_results

_DEFAULTS: Final[dict[str, Any]] = {
    "background": False,
    "frequency_penalty": 0.0,
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "presence_penalty": 0.0,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": {"effort": None, "summary": None},
    "safety_identifier": None,
    "service_tier": "default",
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}
ECHOED: Final = frozenset(_DEFAULTS)
"""Request fields the Response object repeats as given."""

MODEL_FAILED: Final[dict[str, Any]] = {"code": "server_error", "message": SERVER_ERROR["message"]}


def response_object(
    r: Reply,
    status: str,
    *,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    error: dict[str, Any] | None = None,
    content_filters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A whole Response object: its identity and state first, then the rest by name (§3)."""
    fields = _DEFAULTS | r.echo
    reason = r.incomplete_reason if status == "incomplete" else None
    varying = {
        "completed_at": r.created_at if status == "completed" else None,
        "content_filters": content_filters,
        "error": error,
        "incomplete_details": None if reason is None else {"reason": reason},
        "model": r.model,
        "output": output,
        "usage": usage,
    }
    rest = fields | varying
    head = {"id": r.ids.response, "object": "response", "created_at": r.created_at}
    return head | {"status": status} | {key: rest[key] for key in sorted(rest)}


def opening(r: Reply) -> dict[str, Any]:
    """The Response as ``response.created`` and ``response.in_progress`` carry it."""
    return response_object(r, "in_progress", output=[], usage=None)


def finished(r: Reply) -> dict[str, Any]:
    """The Response as it ends: the terminal event's, and the non-streaming body."""
    item_status = "completed" if r.status == "completed" else "incomplete"
    if r.kill:  # nothing was released, and the verdict comes in the error frame
        return response_object(r, "failed", output=[], usage=r.usage)
    if r.status == "failed":  # the model failed mid-output, before its items were done
        output = output_items(r, "incomplete")
        return response_object(r, "failed", output=output, usage=r.usage, error=MODEL_FAILED)
    output = output_items(r, item_status)
    return response_object(
        r, r.status, output=output, usage=r.usage, content_filters=content_filters(r)
    )


def output_items(r: Reply, status: str) -> list[dict[str, Any]]:
    """The output: a reasoning item when the model reasoned, then the answer if it began."""
    items = [reasoning_item(r, r.summary_text())] if r.summary else []
    if r.emitted:
        items.append(answer_item(r, status, r.text()))
    return items


def reasoning_item(r: Reply, summary: str | None) -> dict[str, Any]:
    """``summary`` None: as announced, before its summary exists."""
    parts = [] if summary is None else [{"type": "summary_text", "text": summary}]
    return {"id": r.ids.reasoning, "type": "reasoning", "summary": parts}


def answer_item(r: Reply, status: str, text: str) -> dict[str, Any]:
    """The message, or the function call when the model calls a tool."""
    if r.tool_name is not None:
        return {
            "id": r.ids.function_call,
            "type": "function_call",
            "status": status,
            "arguments": text,
            "call_id": r.ids.call,
            "name": r.tool_name,
        }
    content = [] if status == "in_progress" and not text else [text_part(text)]
    return {
        "id": r.ids.message,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def content_filters(r: Reply) -> list[dict[str, Any]]:
    """Azure's verdicts on the prompt and on the output (§6); offsets count from the prompt."""
    end = r.prompt_chars + len(r.text())
    flagged = r.category if r.incomplete_reason == "content_filter" else None
    return [
        _verdict("prompt", filter_results(PROMPT_CATEGORIES, None), 0, r.prompt_chars),
        _verdict("completion", filter_results(MESSAGE_CATEGORIES, flagged), r.prompt_chars, end),
    ]


def _verdict(source: str, results: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    blocked = any(value.get("filtered") for value in results.values())
    return {
        "blocked": blocked,
        "source_type": source,
        "content_filter_raw": [],
        "content_filter_results": results,
        "content_filter_offsets": {"start_offset": start, "end_offset": end, "check_offset": start},
    }


def prompt_verdicts(category: str, prompt_chars: int) -> list[dict[str, Any]]:
    """The ``content_filters`` of a 400 prompt block: the prompt's verdict, ``category`` hit."""
    return [_verdict("prompt", filter_results(PROMPT_CATEGORIES, category), 0, prompt_chars)]
