"""An observer bug never breaks a response: the tap logs it once and counts one parse error."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.observe import semantics
from tests.conftest import Running, chat_path
from tests.integration.test_forwarding import MESSAGES, recorded_upstream

STREAM = (Path(__file__).parents[1] / "data" / "streams" / "azure-default-gpt-4o-mini.sse")
BODY = b'{"choices":[{"index":0,"finish_reason":"stop","message":{"content":"4242"}}]}'


def json_upstream() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def parse_errors(proxy: Running) -> float:
    assert proxy.registry is not None
    value = proxy.registry.get_sample_value("aoai_proxy_stream_parse_errors_total",
                                            {"deployment": "gpt-4o"})
    return value or 0.0


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
async def test_a_raising_observer_leaves_the_response_intact_logs_once_counts_one(
        stream: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        start_server: Callable[[web.Application], Awaitable[Running]],
        start_proxy: Callable[..., Awaitable[Running]], http: aiohttp.ClientSession) -> None:
    def broken(*args: Any) -> int:
        raise RuntimeError("observer bug")

    monkeypatch.setattr(semantics.ChatSemantics, "apply", broken)
    caplog.set_level(logging.ERROR, logger="aoai_stream_proxy")
    expected = STREAM.read_bytes() if stream else BODY
    app = recorded_upstream(expected, [1, 7, 100, 3, 4096]) if stream else json_upstream()
    upstream = await start_server(app)
    proxy = await start_proxy(upstream.url)
    request = {"messages": MESSAGES, "stream": stream}
    async with http.post(proxy.url + chat_path(), json=request) as response:
        assert response.status == 200
        assert await response.read() == expected
    assert proxy.registry is not None
    assert proxy.registry.get_sample_value(
        "aoai_proxy_requests_total", {"deployment": "gpt-4o", "client": "unknown",
                                      "operation": "chat_completions",
                                      "stream": str(stream).lower(), "status_code": "200"}) == 1
    assert parse_errors(proxy) == 1
    failures = [r for r in caplog.records if r.name == "aoai_stream_proxy"
                and r.levelno >= logging.ERROR]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert failures[0].exc_info is not None and "observer bug" in str(failures[0].exc_info[1])
