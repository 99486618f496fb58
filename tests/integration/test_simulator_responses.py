"""The simulator's Responses API, checked on the wire and through the real openai client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer
from openai.types.responses import ResponseFailedEvent, ResponseIncompleteEvent
from pytest_aiohttp import AiohttpClient

from proxy.simulator import SIM_STATS, EventGate, SimulatorConfig, create_simulator_app
from proxy.simulator.options import parse_options
from proxy.simulator.resource import Resource
from proxy.simulator.responses_plan import ResponsesRequest, plan_reply
from proxy.simulator.responses_stream import response_events
from proxy.simulator.streams import DROP
from tests.integration.conftest import KEY, Client, azure_client, until

API_VERSION = "2025-04-01-preview"
V1 = "/openai/v1/responses"
PREVIEW = f"/openai/responses?api-version={API_VERSION}"
TEXT = "Hello from the simulated Azure OpenAI"  # the first six words, deterministic
OPENING = ["response.created", "response.in_progress"]
MESSAGE_OPEN = ["response.output_item.added", "response.content_part.added"]
MESSAGE_CLOSE = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


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


async def post(client: Client, control: str = "", path: str = V1, **body: Any) -> Any:
    """A non-streaming answer's status and JSON body."""
    headers = {"x-simulator": control} if control else {}
    request = {"model": "gpt-4o", "input": "hi"} | body
    async with client.post(path, json=request, headers=headers) as response:
        return response.status, await response.json()


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
    async with azure_client(server, API_VERSION) as azure, v1(server) as v1_client:
        for client in (azure, v1_client):
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


def _sync_azure_round_trip(endpoint: str) -> tuple[list[str], str, str]:
    """The synchronous client, as most apps use it: event types, streamed text, body text."""
    with openai.AzureOpenAI(
        azure_endpoint=endpoint, api_key=KEY, api_version=API_VERSION, max_retries=0
    ) as client:
        events = list(client.responses.create(model="gpt-4o", input="hi", stream=True))
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        body = client.responses.create(model="gpt-4o", input="hi")
        return [e.type for e in events], text, body.output_text


async def test_the_synchronous_azure_client_too(server: TestServer) -> None:
    # In a thread, so that the simulator's loop keeps serving while the client blocks.
    kinds, text, body_text = await asyncio.to_thread(
        _sync_azure_round_trip, str(server.make_url(""))
    )
    assert (kinds[0], kinds[-1], text, body_text) == (
        "response.created",
        "response.completed",
        TEXT,
        TEXT,
    )


async def test_openai_clients_see_each_ending(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as azure, v1(server) as v1_client:
        for client in (azure, v1_client):
            for control, status, reason in [
                ("scenario=length", "incomplete", "max_output_tokens"),
                (
                    "scenario=content_filter; filter_ending=incomplete",
                    "incomplete",
                    "content_filter",
                ),
                ("scenario=error_event; error_ending=failed", "failed", None),
            ]:
                headers = {"x-simulator": control}
                stream = await client.responses.create(
                    model="gpt-4o", input="hi", stream=True, extra_headers=headers
                )
                final = [event async for event in stream][-1]
                assert final.type == f"response.{status}"
                assert isinstance(final, ResponseIncompleteEvent | ResponseFailedEvent)
                assert final.response.status == status
                details = final.response.incomplete_details
                assert (details.reason if details else None) == reason
                assert final.response.usage is not None and final.response.usage.output_tokens > 0
            body = await client.responses.create(
                model="gpt-4o", input="hi", extra_headers={"x-simulator": "scenario=length"}
            )
            assert body.status == "incomplete" and body.incomplete_details is not None
            assert body.incomplete_details.reason == "max_output_tokens"


async def test_openai_client_sees_the_content_filter_kill(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as client:
        stream = await client.responses.create(
            model="gpt-4o",
            input="hi",
            stream=True,
            extra_headers={"x-simulator": "scenario=content_filter"},
        )
        seen = []
        with pytest.raises(openai.APIError) as killed:
            async for event in stream:
                seen.append(event.type)
        assert seen == ["response.created", "response.failed"]
        assert killed.value.code == "content_policy_violation"


async def test_openai_client_tool_calls_and_reasoning(server: TestServer) -> None:
    tools: Any = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    async with v1(server) as client:
        headers = {"x-simulator": "scenario=tool_calls; reasoning_tokens=5; cached_tokens=2"}
        stream = await client.responses.create(
            model="gpt-4o", input="hi", tools=tools, stream=True, extra_headers=headers
        )
        events = [event async for event in stream]
        names = {type(event).__name__ for event in events}
        assert {
            "ResponseReasoningSummaryTextDeltaEvent",
            "ResponseFunctionCallArgumentsDeltaEvent",
            "ResponseCompletedEvent",
        } <= names
        final = events[-1]
        assert final.type == "response.completed"
        call = final.response.output[1]
        assert call.type == "function_call" and call.name == "lookup"
        assert json.loads(call.arguments)["unit"] == "celsius"
        usage = final.response.usage
        assert usage is not None
        assert usage.output_tokens_details.reasoning_tokens == 5
        assert usage.input_tokens_details.cached_tokens == 2

        body = await client.responses.create(
            model="gpt-4o", input="hi", tools=tools, extra_headers=headers
        )
        assert [item.type for item in body.output] == ["reasoning", "function_call"]

        # The SDK's accumulating helper rebuilds the same response from the events.
        async with client.responses.stream(model="gpt-4o", input="hi") as managed:
            text = "".join(
                [e.delta async for e in managed if e.type == "response.output_text.delta"]
            )
            whole = await managed.get_final_response()
        assert text == whole.output_text == TEXT


async def test_openai_client_errors(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as client:

        async def create(control: str, stream: bool = True) -> Any:
            headers = {"x-simulator": control}
            return await client.responses.create(
                model="gpt-4o", input="hi", stream=stream, extra_headers=headers
            )

        with pytest.raises(openai.RateLimitError) as limited:
            await create("scenario=rate_limit; retry_after_s=2.5")
        headers = limited.value.response.headers
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("3", "2500")
        with pytest.raises(openai.InternalServerError):
            await create("scenario=server_error")
        with pytest.raises(openai.BadRequestError) as blocked:
            await create("scenario=prompt_filter; category=violence", stream=False)
        assert blocked.value.code == "content_filter" and blocked.value.param == "prompt"
        verdicts = blocked.value.body["content_filters"]  # type: ignore[index]
        assert verdicts[0]["content_filter_results"]["violence"]["filtered"] is True

        stream = await create("scenario=error_event")
        with pytest.raises(openai.APIError, match="The server had an error"):
            async for _ in stream:
                pass
        stream = await create("scenario=disconnect")
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                pass
        with pytest.raises(openai.InternalServerError):
            await create("scenario=error_event", stream=False)


# ---------------------------------------------------------------------------------------------
# How a response ends, per scenario
# ---------------------------------------------------------------------------------------------


async def test_token_limit_and_length_end_incomplete_at_max_output_tokens(sim: Client) -> None:
    limited = await sse(sim, "tokens=20", max_output_tokens=16)
    assert types(limited)[-1] == "response.incomplete"
    final = limited[-1]["response"]
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["max_output_tokens"] == 16
    assert types(limited).count("response.output_text.delta") == 16
    assert final["usage"]["output_tokens"] == 16
    assert final["output"][0]["status"] == "incomplete"
    assert limited[-2]["item"]["status"] == "incomplete"  # output_item.done

    length = await sse(sim, "scenario=length")
    assert types(length)[-4:] == MESSAGE_CLOSE + ["response.incomplete"]
    assert length[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert deltas(length) == TEXT

    # The limit counts reasoning tokens: 10 of them leave 6 of the 16 for output.
    reasoning = await sse(sim, "tokens=20; reasoning_tokens=10", max_output_tokens=16)
    assert deltas(reasoning) == TEXT
    assert reasoning[-1]["response"]["usage"]["output_tokens"] == 16

    status, body = await post(sim, "scenario=length")
    assert (status, body["status"], body["incomplete_details"]) == (
        200,
        "incomplete",
        {"reason": "max_output_tokens"},
    )
    status, body = await post(sim, max_output_tokens=15)
    assert status == 400 and body["error"]["param"] == "max_output_tokens"


async def test_output_filter_kills_the_stream_with_three_frames(sim: Client) -> None:
    events = await sse(sim, "scenario=content_filter")
    assert types(events) == ["response.created", "response.failed", "error"]
    failed = events[1]["response"]
    assert (failed["status"], failed["error"], failed["output"]) == ("failed", None, [])
    assert failed["usage"]["output_tokens"] == 3  # generated, then withheld by the filter
    assert events[2]["error"]["code"] == "content_policy_violation"
    assert set(events[2]) == {"type", "sequence_number", "error"}


async def test_output_filter_can_end_incomplete_instead(sim: Client) -> None:
    control = "scenario=content_filter; category=hate; filter_ending=incomplete"
    events = await sse(sim, control)
    assert types(events) == (
        OPENING
        + MESSAGE_OPEN
        + ["response.output_text.delta"] * 3
        + MESSAGE_CLOSE
        + ["response.incomplete"]
    )
    final = events[-1]["response"]
    assert final["incomplete_details"] == {"reason": "content_filter"}
    assert final["usage"]["output_tokens"] == 3
    prompt, completion = final["content_filters"]
    assert (prompt["source_type"], prompt["blocked"]) == ("prompt", False)
    assert (completion["source_type"], completion["blocked"]) == ("completion", True)
    assert completion["content_filter_results"]["hate"] == {"filtered": True, "severity": "medium"}
    assert completion["content_filter_results"]["violence"]["filtered"] is False

    # Without a stream there is no kill: the body is the incomplete, filtered Response.
    status, body = await post(sim, "scenario=content_filter")
    assert (status, body["status"], body["incomplete_details"]) == (
        200,
        "incomplete",
        {"reason": "content_filter"},
    )
    assert body["content_filters"][1]["content_filter_results"]["violence"]["filtered"] is True
    assert body["output"][0]["content"][0]["text"] == "Hello from the"


async def test_prompt_filter_is_a_400_with_content_filters(sim: Client) -> None:
    for stream in (True, False):
        status, body = await post(sim, "scenario=prompt_filter; category=jailbreak", stream=stream)
        error = body["error"]
        assert (status, error["code"], error["param"]) == (400, "content_filter", "prompt")
        assert "innererror" not in error
        [verdict] = error["content_filters"]
        assert (verdict["source_type"], verdict["blocked"]) == ("prompt", True)
        results = verdict["content_filter_results"]
        assert results["jailbreak"] == {"filtered": True, "detected": True}
        assert results["self_harm"] == {"filtered": False, "severity": "safe"}


async def test_tool_call_stream_is_a_function_call_item(sim: Client) -> None:
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    events = await sse(sim, "scenario=tool_calls", tools=tools)
    assert types(events) == (
        OPENING
        + ["response.output_item.added"]
        + ["response.function_call_arguments.delta"] * 6
        + ["response.function_call_arguments.done", "response.output_item.done"]
        + ["response.completed"]
    )
    arguments = deltas(events, "response.function_call_arguments.delta")
    assert json.loads(arguments)["location"] == "Paris, France"
    item = events[-1]["response"]["output"][0]
    assert (item["type"], item["name"], item["arguments"]) == ("function_call", "lookup", arguments)
    assert item["call_id"].startswith("call_") and item["status"] == "completed"
    assert events[-1]["response"]["tools"] == tools
    assert events[2]["item"] | {"arguments": arguments, "status": "completed"} == item


async def test_reasoning_summary_comes_before_the_output(sim: Client) -> None:
    events = await sse(sim, "reasoning_tokens=40; cached_tokens=3")
    kinds = types(events)
    first_output = kinds.index("response.output_text.delta")
    summary = [i for i, kind in enumerate(kinds) if kind.startswith("response.reasoning_summary")]
    assert summary and max(summary) < first_output
    assert kinds[2] == "response.output_item.added" and events[2]["item"]["type"] == "reasoning"
    assert deltas(events, "response.reasoning_summary_text.delta")
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    usage = final["usage"]
    assert usage["output_tokens"] == 46 and usage["output_tokens_details"]["reasoning_tokens"] == 40
    assert usage["input_tokens_details"]["cached_tokens"] == 3
    assert usage["total_tokens"] == usage["input_tokens"] + 46


async def test_error_event_ends_with_an_error_frame_or_response_failed(sim: Client) -> None:
    events = await sse(sim, "scenario=error_event")
    assert types(events) == OPENING + MESSAGE_OPEN + ["response.output_text.delta"] * 3 + ["error"]
    assert events[-1]["error"]["code"] == "server_error"

    events = await sse(sim, "scenario=error_event; error_ending=failed")
    assert types(events)[-2:] == ["response.output_text.delta", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["usage"]["output_tokens"] == 3
    assert failed["output"][0]["status"] == "incomplete"

    status, body = await post(sim, "scenario=error_event")
    assert status == 500 and body["error"]["type"] == "server_error"


async def test_disconnect_cuts_the_connection_after_the_given_deltas(sim: Client) -> None:
    received: list[bytes] = []
    body = {"model": "gpt-4o", "input": "hi", "stream": True}
    headers = {"x-simulator": "scenario=disconnect; disconnect_after=2"}
    async with sim.post(V1, json=body, headers=headers) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            while True:
                received.append(await response.content.readuntil(b"\n\n"))
                assert received[-1], "the body ended cleanly"
    assert len(received) == 6  # created, in_progress, item, part, two deltas
    assert received[-1].startswith(b"event: response.output_text.delta\n")
    stats = sim.app[SIM_STATS]
    assert (stats.streams_dropped, stats.streams_completed) == (1, 0)
    assert stats.last_usage is not None and stats.last_usage["output_tokens"] == 2


async def test_stamp_puts_the_send_time_on_each_delta(sim: Client) -> None:
    events = await sse(sim, "stamp=1")
    stamps = [int(e["obfuscation"]) for e in events if e["type"].endswith(".delta")]
    assert len(stamps) == 6 and stamps == sorted(stamps)
    assert "obfuscation" not in (await sse(sim))[4]


async def test_bad_requests_are_400s(sim: Client) -> None:
    cases: list[tuple[str, dict[str, Any], str | None]] = [
        ("", {"stream": True, "stream_options": {"include_usage": True}}, "unknown_parameter"),
        ("", {"input": None}, None),
        ("filter_mode=async", {}, "invalid_simulator_control"),
        ("no_done=1", {}, "invalid_simulator_control"),
        ("filter_ending=incomplete", {}, "invalid_simulator_control"),
        ("scenario=stop; error_ending=failed", {}, "invalid_simulator_control"),
    ]
    for control, body, code in cases:
        status, answer = await post(sim, control, **body)
        assert status == 400 and answer["error"]["code"] == code, (control, answer)
    async with sim.post("/openai/responses", json={"model": "gpt-4o", "input": "hi"}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "BadRequest"
    status, answer = await post(sim, model="gpt-9")
    assert status == 404 and answer["error"]["code"] == "DeploymentNotFound"


# ---------------------------------------------------------------------------------------------
# Pacing and the test hooks
# ---------------------------------------------------------------------------------------------


def planned(control: str, tokens: int = 6) -> list[Any]:
    """The event iterator's output, each event shown by its type (pauses and the cut as is)."""
    resource = Resource(SimulatorConfig(tokens=tokens), None)
    request = ResponsesRequest(True, None, "hi", "get_weather", {})
    shown: list[Any] = []
    for event in response_events(plan_reply(parse_options(control), request, resource)):
        shown.append(
            json.loads(event.split(b"\ndata: ")[1])["type"] if isinstance(event, bytes) else event
        )
    return shown


def test_pauses_come_before_the_first_output_and_between_deltas() -> None:
    shown = planned("first_token_delay_ms=300; token_delay_ms=20", tokens=3)
    assert shown == OPENING + [0.3] + MESSAGE_OPEN + [
        "response.output_text.delta",
        0.02,
        "response.output_text.delta",
        0.02,
        "response.output_text.delta",
    ] + MESSAGE_CLOSE + ["response.completed"]
    # A reasoning phase is paced too, and the first-token pause follows it.
    shown = planned("first_token_delay_ms=300; token_delay_ms=20; reasoning_tokens=2", tokens=1)
    reasoning_end = shown.index(0.3)
    assert 0.02 in shown[:reasoning_end]
    assert shown[reasoning_end - 1] == "response.output_item.done"
    assert shown[reasoning_end + 1 :] == MESSAGE_OPEN + ["response.output_text.delta"] + (
        MESSAGE_CLOSE + ["response.completed"]
    )
    # The kill arrives once the filter has seen half of the output.
    shown = planned("scenario=content_filter; first_token_delay_ms=300; token_delay_ms=20")
    assert shown == ["response.created", pytest.approx(0.36), "response.failed", "error"]
    assert planned("scenario=disconnect; disconnect_after=1")[-2:] == [
        "response.output_text.delta",
        DROP,
    ]


async def test_gate_holds_every_event_until_released(aiohttp_client: AiohttpClient) -> None:
    gate = EventGate()
    client = await aiohttp_client(create_simulator_app(SimulatorConfig(tokens=1), gate=gate))
    body = {"model": "gpt-4o", "input": "hi", "stream": True}
    async with client.post(V1, json=body) as response:
        assert response.status == 200  # headers arrive while the first event is held
        received: list[bytes] = []
        for _ in range(9):  # created, in_progress, 2 opening, 1 delta, 3 closing, completed
            await until(lambda: gate.waiting == 1)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(response.content.readuntil(b"\n\n"), 0.05)
            gate.release()
            received.append(await response.content.readuntil(b"\n\n"))
        assert received[0].startswith(b"event: response.created\n")
        assert received[-1].startswith(b"event: response.completed\n")
        assert await response.content.read() == b""
    stats = client.app[SIM_STATS]
    assert (stats.streams_started, stats.streams_completed, stats.open_streams) == (1, 1, 0)

    request = asyncio.ensure_future(client.post(V1, json={"model": "gpt-4o", "input": "hi"}))
    await until(lambda: gate.waiting == 1)
    assert not request.done()
    gate.open()
    async with await request as answer:
        assert (await answer.json())["status"] == "completed"
