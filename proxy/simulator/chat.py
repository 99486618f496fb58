"""The chat completions endpoint: the body's parameters, then a stream or one whole body."""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web

from .checks import accept, check_prompt_filter, optional_int
from .completion import ChatRequest, Completion, plan_completion
from .errors import generation_failed, invalid
from .options import SCENARIOS
from .streams import drop_connection, stream
from .wire import MESSAGE_CATEGORIES, call_id, filter_results, prompt_filter_results

_STREAM_OPTIONS_SINCE: Final = "2024-09-01"
_MAX_N: Final = 128


async def chat_completions(request: web.Request) -> web.StreamResponse:
    call = await accept(request, SCENARIOS, "chat completions", "ChatCompletions_Create")
    chat = _parse_chat_request(call.body, call.api_version if call.classic else None)
    check_prompt_filter(call)
    resource, scenario = call.resource, call.options.scenario
    completion = plan_completion(call.options, chat, resource)
    resource.stats.last_usage = completion.usage
    budget = completion.usage["prompt_tokens"] + completion.steps * completion.n
    headers = resource.headers(call.deployment, success=True, tokens=budget)
    if chat.stream:
        return await stream(request, completion, resource, headers)
    if scenario == "disconnect":
        drop_connection(request)
        return web.Response()
    if scenario == "error_event":
        raise generation_failed(call.deployment)
    delay = completion.first_token_delay + completion.token_delay * completion.steps
    return await resource.respond(_chat_body(completion), headers, delay)


def _parse_chat_request(body: dict[str, Any], classic_api_version: str | None) -> ChatRequest:
    if "stream_options" in body and _rejects_stream_options(classic_api_version):
        raise invalid("Unrecognized request argument supplied: stream_options")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' is a required property", "messages")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        raise invalid(message, "stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid(f"{options!r} is not of type 'object' - 'stream_options'", "stream_options")
    n = optional_int(body, "n", 1) or 1
    if n > _MAX_N:
        raise invalid(f"{n} is greater than the maximum of {_MAX_N} - 'n'", "n")
    limits = [optional_int(body, key, 1) for key in ("max_tokens", "max_completion_tokens")]
    given = [limit for limit in limits if limit is not None]
    return ChatRequest(
        stream=stream,
        include_usage=bool(options and options.get("include_usage") is True),
        n=n,
        max_tokens=min(given) if given else None,
        prompt="".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict)),
        tool_name=_first_tool_name(body),
    )


def _rejects_stream_options(api_version: str | None) -> bool:
    """Classic api-versions before 2024-09-01 do not know ``stream_options``."""
    match = re.match(r"\d{4}-\d{2}-\d{2}", api_version or "")
    return match is not None and match.group() < _STREAM_OPTIONS_SINCE


def _text_of(content: Any) -> str:
    """The text of a message's content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _first_tool_name(body: dict[str, Any]) -> str:
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        function = tools[0].get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return "get_weather"


def _chat_body(c: Completion) -> dict[str, Any]:
    flagged = c.category if c.finish_reason == "content_filter" else None
    choices = [
        {
            "content_filter_results": filter_results(MESSAGE_CATEGORIES, flagged),
            "finish_reason": c.finish_reason,
            "index": index,
            "logprobs": None,
            "message": _message(c, index, call_id()),
        }
        for index in range(c.n)
    ]
    return {
        "choices": choices,
        "created": c.created,
        "id": c.id,
        "model": c.model,
        "object": "chat.completion",
        "prompt_filter_results": prompt_filter_results(),
        "system_fingerprint": c.fingerprint,
        "usage": c.usage,
    }


def _message(c: Completion, index: int, tool_call_id: str) -> dict[str, Any]:
    if c.tool_name is None:
        return {"annotations": [], "content": c.text(index), "refusal": None, "role": "assistant"}
    call = {
        "function": {"arguments": c.text(index), "name": c.tool_name},
        "id": tool_call_id,
        "type": "function",
    }
    return {
        "annotations": [],
        "content": None,
        "refusal": None,
        "role": "assistant",
        "tool_calls": [call],
    }
