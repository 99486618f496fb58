"""The proxy's own error responses, in Azure OpenAI's error shape.

Clients (openai-python, openai-node, LangChain) turn `{"error": {"code", "message"}}` bodies into
their typed exceptions, so the proxy's errors read like Azure's and never echo request secrets.
"""

from __future__ import annotations

import json

from aiohttp import web


def azure_error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
