"""A 400 to a stream request, written in many small pieces, reaches the client whole.

With usage injection on, the proxy reads a 400 before relaying it (to tell an old api-version's
rejection of `stream_options` from any other 400). The prompt content-filter block takes exactly
this path: its body must arrive whole and cleanly ended, with either framing, however the
upstream cuts it, and its filter event must be counted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Running
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import (
    STREAM_BODY,
    STREAM_BODY_WITH_USAGE,
    RawRequest,
    eventually,
    port_of,
    query_value,
    raw_exchange,
    request_bytes,
    total,
)

CATEGORIES = ("hate", "jailbreak", "self_harm", "sexual", "violence")
PROMPT_BLOCK = json.dumps({"error": {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
               "management policy. Please modify your prompt and retry. " * 20,
    "type": None, "param": "prompt", "code": "content_filter", "status": 400,
    "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
        name: {"filtered": name == "self_harm", "severity": "medium"} for name in CATEGORIES}},
}}).encode()
"""Azure's prompt block (a 400 `content_filter` error), padded to a few KiB like a real one."""
PIECE = 7


async def write_in_pieces(request: RawRequest) -> None:
    """The 400 in PIECE-byte writes, each let out before the next: many reads upstream."""
    conn = request.conn
    chunked = query_value(request.target, "framing") == "chunked"
    headers = [("Content-Type", "application/json"), ("apim-request-id", "blocked")]
    if not chunked:
        headers.append(("Content-Length", str(len(PROMPT_BLOCK))))
    await conn.send_head(400, headers, chunked=chunked, reason=b"Bad Request")
    for i in range(0, len(PROMPT_BLOCK), PIECE):
        piece = PROMPT_BLOCK[i:i + PIECE]
        await (conn.send_chunk(piece) if chunked else conn.send(piece))
        await asyncio.sleep(0.001)
    if chunked:
        await conn.end_chunks()


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
@pytest.mark.parametrize("inject", [True, False], ids=["usage-injected", "as-sent"])
async def test_a_400_in_many_pieces_arrives_whole_and_its_filter_event_counts(
        framing: str, inject: bool, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    upstream = await raw_upstream(write_in_pieces)
    proxy = await start_proxy(upstream.url)
    path = ("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
            f"&framing={framing}")
    body = STREAM_BODY if inject else STREAM_BODY_WITH_USAGE
    client = await raw_exchange(port_of(proxy.url), request_bytes(
        "POST", path, body=body, headers=[("Content-Type", "application/json")]), timeout=30)
    response = client.response
    assert response.status == 400
    assert response.complete, "the body's framing ended it (no hang, no cut)"
    assert bytes(response.body) == PROMPT_BLOCK, (len(response.body), len(PROMPT_BLOCK))
    assert response.header("apim-request-id") == "blocked"
    assert len(upstream.requests) == 1  # a content-filter 400 is not a rejection to retry
    assert (upstream.requests[0].body != body) == inject  # the proxy added include_usage

    registry = proxy.registry
    assert await eventually(lambda: total(registry, "aoai_proxy_requests_total") == 1)
    assert total(registry, "aoai_proxy_content_filter_events_total",
                 stage="prompt", category="self_harm") == 1
    assert total(registry, "aoai_proxy_content_filter_events_total") == 1
    assert total(registry, "aoai_proxy_upstream_errors_total") == 0
