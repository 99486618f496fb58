"""The Responses API endpoint (``docs/responses-wire.md`` §1): the body, then a stream or one body.

``POST /openai/v1/responses`` and ``POST /openai/responses?api-version=...``; the deployment
is the body's ``model`` on both.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from .checks import Call, accept, optional_int
from .errors import Rejection, bad_control, generation_failed, invalid, missing_api_version
from .errors import prompt_filtered as chat_prompt_filtered
from .options import SCENARIOS, Options
from .responses_body import ECHOED, finished, prompt_verdicts
from .responses_plan import ResponsesRequest, plan_reply
from .responses_stream import response_events
from .streams import drop_connection, stream_events

_MIN_OUTPUT_TOKENS: Final = 16
_PREVIEW_PATH: Final = "/openai/responses"
# Chat-only keys: what they shape does not exist on Responses streams (no [DONE] either).
_CHAT_ONLY: Final = {
    "filter_mode": "async_filter",
    "trailing_annotation": "trailing_annotation",
    "no_done": "no_done",
}


async def responses_create(request: web.Request) -> web.StreamResponse:
    call = await accept(request, SCENARIOS, "responses", "Responses_Create")
    if request.path == _PREVIEW_PATH and call.api_version is None:
        raise missing_api_version()
    _refuse_chat_only(call.options)
    body = _parse_responses_request(call.body)
    if call.options.scenario == "prompt_filter":
        raise _prompt_filtered(call, body.prompt)
    resource, scenario = call.resource, call.options.scenario
    reply = plan_reply(call.options, body, resource)
    resource.stats.last_usage = reply.usage
    budget = reply.usage["input_tokens"] + reply.steps
    headers = resource.headers(call.deployment, success=True, tokens=budget)
    if body.stream:
        return await stream_events(request, response_events(reply), resource, headers)
    if scenario == "disconnect":
        drop_connection(request)
        return web.Response()
    if scenario == "error_event":
        raise generation_failed(call.deployment)
    steps = len(reply.summary) + reply.steps
    delay = reply.first_token_delay + reply.token_delay * steps
    return await resource.respond(finished(reply), headers, delay)


def _refuse_chat_only(options: Options) -> None:
    for key, field in _CHAT_ONLY.items():
        if getattr(options, field) != getattr(Options(), field):
            raise bad_control(key, "only applies to chat completions")


def _parse_responses_request(body: dict[str, Any]) -> ResponsesRequest:
    if "input" not in body:
        raise invalid("Missing required parameter: 'input'.", "input")
    prompt = _text_of(body["input"])
    if prompt is None:
        raise invalid("Invalid type for 'input': expected a string or an array.", "input")
    stream = body.get("stream") is True
    _check_stream_options(body.get("stream_options"), stream)
    limit = optional_int(body, "max_output_tokens", _MIN_OUTPUT_TOKENS)
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        prompt = instructions + prompt
    return ResponsesRequest(
        stream=stream,
        max_output_tokens=limit,
        prompt=prompt,
        tool_name=_first_tool_name(body),
        echo={key: value for key, value in body.items() if key in ECHOED},
    )


def _check_stream_options(options: Any, stream: bool) -> None:
    """Chat's ``include_usage`` does not exist here (§2): usage is always on the last event."""
    if options is None:
        return
    if not stream:
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        raise invalid(message, "stream_options")
    if isinstance(options, dict) and "include_usage" in options:
        param = "stream_options.include_usage"
        error = {
            "message": f"Unknown parameter: '{param}'.",
            "type": "invalid_request_error",
            "param": param,
            "code": "unknown_parameter",
        }
        raise Rejection(400, error)


def _text_of(value: Any) -> str | None:
    """The text of ``input``: a string, or items whose content is a string or text parts."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return None
    texts: list[str] = []
    for item in value:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
    return "".join(texts)


def _first_tool_name(body: dict[str, Any]) -> str:
    """Responses tools are flat (``{"type": "function", "name": ...}``)."""
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        name = tools[0].get("name")
        if isinstance(name, str) and name:
            return name
    return "get_weather"


def _prompt_filtered(call: Call, prompt: str) -> Rejection:
    """Chat's 400, with the verdicts in ``content_filters`` instead of ``innererror`` (§6)."""
    category = call.options.category or "self_harm"
    rejection = chat_prompt_filtered(call.deployment, category)
    error = rejection.body["error"]
    del error["innererror"]
    error["content_filters"] = prompt_verdicts(category, len(prompt))
    return rejection
