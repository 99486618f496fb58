"""The proxy's own error responses, in Azure OpenAI's error shape.

Clients (openai-python, openai-node, LangChain) turn `{"error": {"code", "message"}}` bodies into
their typed exceptions, so the proxy's errors read like Azure's and never echo request secrets.
"""

from __future__ import annotations

import json
import math

from aiohttp import web


def azure_error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def all_cooling_down(deployment: str, wait: float) -> web.Response:
    """The proxy's own 429 when every upstream for `deployment` is cooling down.

    `retry-after-ms` (which openai-python and openai-node prefer) and `retry-after` say when
    the first of them is back, so an SDK's built-in retry waits exactly long enough
    (docs/routing-wire.md).
    """
    seconds = max(1, math.ceil(wait))
    response = azure_error(429, "429", f"Every upstream serving deployment {deployment!r} is "
                           "cooling down after throttling or failing. Please retry after "
                           f"{seconds} seconds.")
    response.headers["retry-after"] = str(seconds)
    response.headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
    return response
