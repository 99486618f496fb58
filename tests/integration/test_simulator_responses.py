"""The simulator's Responses API, checked on the wire and through the real openai client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from proxy.simulator import SIM_STATS, SimulatorConfig, create_simulator_app

API_VERSION = "2025-04-01-preview"
V1 = "/openai/v1/responses"
PREVIEW = f"/openai/responses?api-version={API_VERSION}"
KEY = "key-1"
TEXT = "Hello from the simulated Azure OpenAI"  # the first six words, deterministic
OPENING = ["response.created", "response.in_progress"]
MESSAGE_OPEN = ["response.output_item.added", "response.content_part.added"]
MESSAGE_CLOSE = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]

Client = TestClient[web.Request, web.Application]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) per event, checking each is exactly an `event:` and a `data:` line."""
    assert body.endswith("\n\n"), body[-200:]
    events = []
    for block in body[:-2].split("\n\n"):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: "), block
        data = json.loads(data_line[len("data: ") :])
        assert json.dumps(data, separators=(",", ":"), ensure_ascii=False) == data_line[6:]
        events.append((name_line[len("event: ") :], data))
    return events


async def sse(
    client: Client, control: str = "", path: str = V1, **body: Any
) -> list[dict[str, Any]]:
    """A stream's event payloads; checks framing, names, and the numbering 0, 1, 2, ..."""
    headers = {"x-simulator": control} if control else {}
    request = {"model": "gpt-4o", "input": "hi", "stream": True} | body
    async with client.post(path, json=request, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        events = parse_sse((await response.read()).decode())
    for number, (name, data) in enumerate(events):
        assert data["type"] == name and data["sequence_number"] == number
    return [data for _, data in events]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def deltas(events: list[dict[str, Any]], kind: str = "response.output_text.delta") -> str:
    return "".join(e["delta"] for e in events if e["type"] == kind)


@pytest.fixture
async def sim(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_simulator_app(SimulatorConfig(tokens=6)))


@pytest.fixture
async def server(aiohttp_server: AiohttpServer) -> TestServer:
    return await aiohttp_server(create_simulator_app(SimulatorConfig(tokens=6, api_keys=(KEY,))))


@asynccontextmanager
async def azure(server: TestServer) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=str(server.make_url("")),
        api_key=KEY,
        api_version=API_VERSION,
        max_retries=0,
    ) as client:
        yield client


@asynccontextmanager
async def v1(server: TestServer) -> AsyncIterator[openai.AsyncOpenAI]:
    base_url = str(server.make_url("/openai/v1/"))
    async with openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0) as client:
        yield client


# ---------------------------------------------------------------------------------------------
# The wire
# ---------------------------------------------------------------------------------------------


async def test_completed_stream_has_the_lifecycle_and_usage_only_at_the_end(sim: Client) -> None:
    for path in (V1, PREVIEW):
        events = await sse(sim, path=path)
        assert types(events) == (
            OPENING
            + MESSAGE_OPEN
            + ["response.output_text.delta"] * 6
            + MESSAGE_CLOSE
            + ["response.completed"]
        )
        assert deltas(events) == TEXT
        created, final = events[0]["response"], events[-1]["response"]
        assert (created["status"], created["usage"], created["output"]) == ("in_progress", None, [])
        assert created["content_filters"] is None
        assert all("usage" not in e for e in events[1:-1] if "response" not in e)
        assert events[1]["response"]["usage"] is None
        assert final["status"] == "completed" and final["incomplete_details"] is None
        assert final["id"] == created["id"] and final["id"].startswith("resp_")
        assert final["output"][0]["content"][0]["text"] == TEXT
        assert final["usage"] == {
            "input_tokens": 7,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 6,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 13,
        }
        assert sim.app[SIM_STATS].last_usage == final["usage"]
        delta = events[4]
        item = events[2]["item"]
        assert delta == {
            "type": "response.output_text.delta",
            "sequence_number": 4,
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "delta": "Hello",
            "logprobs": [],
        }


async def test_non_stream_body_is_the_finished_response(sim: Client) -> None:
    async with sim.post(V1, json={"model": "gpt-4o", "input": "hi"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        body = await response.json()
    assert (body["object"], body["status"], body["incomplete_details"]) == (
        "response",
        "completed",
        None,
    )
    assert body["output"][0]["content"][0]["text"] == TEXT
    assert body["usage"]["output_tokens"] == 6
    sources = [(f["source_type"], f["blocked"]) for f in body["content_filters"]]
    assert sources == [("prompt", False), ("completion", False)]


# ---------------------------------------------------------------------------------------------
# The real openai client
# ---------------------------------------------------------------------------------------------


async def test_openai_clients_stream_and_complete(server: TestServer) -> None:
    async with azure(server) as azure_client, v1(server) as v1_client:
        for client in (azure_client, v1_client):
            stream = await client.responses.create(model="gpt-4o", input="hi", stream=True)
            events = [event async for event in stream]
            text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
            assert text == TEXT
            final = events[-1]
            assert final.type == "response.completed"
            assert final.response.status == "completed"
            assert final.response.output_text == TEXT
            assert final.response.usage is not None
            assert final.response.usage.output_tokens == 6

            body = await client.responses.create(model="gpt-4o", input="hi")
            assert (body.status, body.output_text) == ("completed", TEXT)
            assert body.usage is not None and body.usage.input_tokens == 7
