"""Non-stream bodies: whether one arrives whole with its headers or in pieces, the client gets
the same bytes and the same framing, and the proxy counts what it said."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Running, chat_path
from tests.integration.conftest import until

BODY = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o", "created": 1,
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hello there."}}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
}).encode()


def upstream_app(*, pieces: int) -> web.Application:
    """Answers chat with BODY (Content-Length) in one write, or in `pieces` delayed writes;
    HEAD with a Content-Length and no body; DELETE with a 204."""

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        if pieces <= 1:
            return web.Response(body=BODY, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(BODY)
        await response.prepare(request)
        step = -(-len(BODY) // pieces)
        for at in range(0, len(BODY), step):
            await response.write(BODY[at:at + step])
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response

    async def head(request: web.Request) -> web.Response:
        return web.Response(headers={"Content-Length": "5000",
                                     "Content-Type": "application/octet-stream"})

    async def delete(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/openai/deployments/{name}/chat/completions", chat)
    app.router.add_route("HEAD", "/files/x", head)
    app.router.add_delete("/files/x", delete)
    return app


@pytest.mark.parametrize("pieces", [1, 4], ids=["whole", "in-pieces"])
async def test_json_body_keeps_its_bytes_framing_and_counts(
        pieces: int, start_server: Callable[[web.Application], Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    upstream = await start_server(upstream_app(pieces=pieces))
    proxy = await start_proxy(upstream.url)
    request = {"messages": [{"role": "user", "content": "hi"}]}
    async with http.post(proxy.url + chat_path(), json=request) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(BODY))
        assert "Transfer-Encoding" not in response.headers
        assert await response.read() == BODY
    labels = {"deployment": "gpt-4o", "client": "unknown"}
    # Recorded once the handler is done, which may be just after the client has the body.
    await until(lambda: proxy.sample("aoai_proxy_requests_total", **labels,
                                     operation="chat_completions", stream="false",
                                     status_code="200") == 1)
    assert proxy.sample("aoai_proxy_tokens_total", **labels, token_type="prompt") == 11
    assert proxy.sample("aoai_proxy_tokens_total", **labels, token_type="completion") == 3
    assert proxy.sample("aoai_proxy_finish_reasons_total", **labels,
                        finish_reason="stop") == 1
    assert proxy.sample("aoai_proxy_time_to_first_byte_seconds_count", **labels,
                        stream="false") == 1


async def test_head_and_no_content_answers_carry_no_body(
        start_server: Callable[[web.Application], Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    upstream = await start_server(upstream_app(pieces=1))
    proxy = await start_proxy(upstream.url)
    async with asyncio.timeout(10):
        async with http.head(proxy.url + "/files/x") as response:
            assert response.status == 200
            # A HEAD answer's length describes the GET's body: it is passed on, with no bytes.
            assert response.headers["Content-Length"] == "5000"
            assert await response.read() == b""
        async with http.delete(proxy.url + "/files/x") as response:
            assert response.status == 204
            assert await response.read() == b""
        # The connection is still in step: a following request gets its own answer.
        async with http.post(proxy.url + chat_path(), json={"messages": []}) as response:
            assert await response.read() == BODY
