"""The operation a path addresses, and the tap it picks (regression 5 of docs/responses-wire.md
section 8: a gateway that counted tokens only on paths ending in /completions)."""

from __future__ import annotations

import json

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.observe.semantics import Usage
from proxy.observe.tap import tap_for
from proxy.relay.operation import OPERATIONS, operation_of


@pytest.mark.parametrize(("path", "operation"), [
    ("/openai/deployments/gpt-4o/chat/completions", "chat_completions"),
    ("/openai/deployments/gpt-4o/extensions/chat/completions", "chat_completions"),
    ("/openai/v1/chat/completions", "chat_completions"),
    ("/openai/deployments/gpt-4o/completions", "completions"),
    ("/openai/v1/completions", "completions"),
    ("/openai/deployments/gpt-4o/embeddings", "embeddings"),
    ("/openai/v1/embeddings", "embeddings"),
    ("/openai/v1/responses", "responses"),
    ("/openai/responses", "responses"),
    ("/openai/v1/responses/resp_1", "other"),  # a stored response: counted when created
    ("/openai/v1/responses/resp_1/cancel", "other"),
    ("/openai/deployments//chat/completions", "other"),
    ("/openai/deployments/gpt-4o", "other"),
    ("/openai/deployments/gpt-4o/responses", "responses"),
    ("/openai/v1/models", "other"),
    ("/openai/v1/chat/completions/", "other"),
    ("/v1/chat/completions", "other"),
    ("/", "other"),
    ("/openai/deployments/x/audio/transcriptions", "other"),
])
def test_operation_of(path: str, operation: str) -> None:
    assert operation_of(path) == operation
    assert operation in OPERATIONS


def headers(content_type: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({"Content-Type": content_type}))


RESPONSES_STREAM = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":3,"item_id":"m","output_index":0,"content_index":0,"delta":"Hi"}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed","sequence_number":4,'
    b'"response":{"status":"completed","output":[],"usage":{"input_tokens":5,'
    b'"output_tokens":1}}}\n\n'
)


def test_the_responses_operation_gets_the_responses_observer() -> None:
    tap = tap_for(headers("text/event-stream"), operation="responses", max_event_bytes=1 << 20)
    tap.feed(RESPONSES_STREAM)
    obs = tap.finish()
    assert obs is not None
    assert (obs.usage, obs.finish_reasons, obs.output_deltas) == (
        Usage(prompt_tokens=5, completion_tokens=1), {0: "stop"}, 1)
    body = json.dumps({"object": "response", "status": "incomplete",
                       "incomplete_details": {"reason": "max_output_tokens"},
                       "usage": {"input_tokens": 5, "output_tokens": 9}}).encode()
    tap = tap_for(headers("application/json"), operation="responses", max_event_bytes=1 << 20)
    tap.feed(body)
    obs = tap.finish()
    assert obs is not None
    assert (obs.usage, obs.finish_reasons) == (Usage(prompt_tokens=5, completion_tokens=9),
                                               {0: "length"})


@pytest.mark.parametrize("operation", ["chat_completions", "other"])
def test_other_operations_read_chat_semantics(operation: str) -> None:
    tap = tap_for(headers("text/event-stream"), operation=operation, max_event_bytes=1 << 20)
    tap.feed(RESPONSES_STREAM)
    obs = tap.finish()
    assert obs is not None
    assert (obs.usage, obs.finish_reasons, obs.output_deltas) == (None, {}, 0)
