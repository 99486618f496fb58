"""The legacy completions endpoint: one whole ``text_completion`` body, never a stream."""

from __future__ import annotations

import time
from typing import Any, Final

from aiohttp import web

from .checks import accept, check_prompt_filter, optional_int
from .completion import prompt_tokens, usage
from .errors import invalid
from .wire import SEVERITY_CATEGORIES, filter_results, prompt_filter_results, random_id, words

_SCENARIOS: Final = frozenset({"stop", "length", "rate_limit", "server_error", "prompt_filter"})
_DEFAULT_MAX_TOKENS: Final = 16  # the legacy API's own default


async def legacy_completions(request: web.Request) -> web.StreamResponse:
    call = await accept(request, _SCENARIOS, "legacy completions", "Completions_Create")
    prompts = _prompts(call.body)
    check_prompt_filter(call)
    resource, options = call.resource, call.options
    tokens = options.tokens_or(resource.config.tokens)
    steps = min(tokens, optional_int(call.body, "max_tokens", 1) or _DEFAULT_MAX_TOKENS)
    finish = "length" if options.scenario == "length" or steps < tokens else "stop"
    n = optional_int(call.body, "n", 1) or 1
    counted = usage(prompt_tokens("".join(prompts)), steps * n, options)
    resource.stats.last_usage = counted
    reply = _text_completion(resource.config.model, words(steps), finish, n, counted)
    headers = resource.headers(call.deployment, success=True, tokens=counted["total_tokens"])
    delay = resource.config.first_token_delay + resource.config.token_delay * steps
    return await resource.respond(reply, headers, delay)


def _prompts(body: dict[str, Any]) -> list[str]:
    if body.get("stream") is True:
        raise invalid("The simulator answers legacy completions without streaming.", "stream")
    prompt = body.get("prompt")
    prompts: list[Any] = prompt if isinstance(prompt, list) else [prompt]
    if not all(isinstance(p, str) for p in prompts):
        raise invalid("'prompt' must be a string or a list of strings", "prompt")
    return prompts


def _text_completion(
    model: str, text: str, finish: str, n: int, counted: dict[str, Any]
) -> dict[str, Any]:
    """The whole body: ``n`` identical choices, as the simulator's text is deterministic."""
    choices = [
        {
            "content_filter_results": filter_results(SEVERITY_CATEGORIES, None),
            "finish_reason": finish,
            "index": index,
            "logprobs": None,
            "text": text,
        }
        for index in range(n)
    ]
    return {
        "choices": choices,
        "created": int(time.time()),
        "id": random_id("cmpl-", 29),
        "model": model,
        "object": "text_completion",
        "prompt_filter_results": prompt_filter_results(),
        "usage": counted,
    }
