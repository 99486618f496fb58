"""The simulated Azure OpenAI upstream, checked on the wire and through the real openai client."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import time
from typing import Any, cast

import aiohttp
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai.types.chat import ChatCompletionMessageParam
from pytest_aiohttp import AiohttpClient

from proxy.simulator import (
    SIM_STATS,
    EventGate,
    SimulatorConfig,
    SimulatorStats,
    create_simulator_app,
    serve_simulator,
)
from proxy.simulator.streams import _write_events
from tests.integration.conftest import KEY, Client, azure_client, until

API_VERSION = "2024-10-21"
CHAT = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
STREAM = {"messages": MESSAGES, "stream": True}
WITH_USAGE = {**STREAM, "stream_options": {"include_usage": True}}
# The first six words the simulator writes, in order (its text is deterministic).
FIRST_WORDS = ["Hello", " from", " the", " simulated", " Azure", " OpenAI"]
SEVERITY = {"hate", "self_harm", "sexual", "violence"}
SAFE = {"filtered": False, "severity": "safe"}
OBFUSCATION = re.compile(r"[A-Za-z0-9]{0,16}")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


# Azure sorts keys, except in these two objects (as in the real captures).
UNSORTED = (["prompt_index", "content_filter_results"], ["filtered", "detected"])


def _sorted_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert keys == sorted(keys) or keys in UNSORTED, keys
    return dict(pairs)


def load(payload: str) -> Any:
    """Parse one event's JSON, checking it is compact and its keys are in Azure's order."""
    value = json.loads(payload, object_pairs_hook=_sorted_keys)
    assert json.dumps(value, separators=(",", ":"), ensure_ascii=False) == payload
    return value


async def sse_payloads(response: aiohttp.ClientResponse) -> list[str]:
    """The `data:` payloads of a complete SSE body, checking the framing on the way."""
    body = (await response.read()).decode()
    assert body.endswith("\n\n")
    events = body[:-2].split("\n\n")
    for event in events:
        assert event.startswith("data: ") and "\n" not in event, event
    return [event[len("data: ") :] for event in events]


async def stream(
    client: Client, control: str = "", body: dict[str, Any] | None = None, path: str = CHAT
) -> tuple[aiohttp.ClientResponse, list[str]]:
    headers = {"x-simulator": control} if control else {}
    async with client.post(path, json=body or STREAM, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        return response, await sse_payloads(response)


def content_of(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if c["choices"] and c["choices"][0]["index"] == index and "delta" in c["choices"][0]
    )


def is_annotation(chunk: dict[str, Any]) -> bool:
    return chunk["id"] == "" and bool(chunk["choices"]) and "delta" not in chunk["choices"][0]


def stats_of(client: Client) -> SimulatorStats:
    return client.app[SIM_STATS]


# ---------------------------------------------------------------------------------------------
# Stream shape
# ---------------------------------------------------------------------------------------------


async def test_default_stream_has_azures_event_order_shapes_and_headers(sim: Client) -> None:
    response, payloads = await stream(sim)
    assert payloads[-1] == "[DONE]"
    chunks = [load(p) for p in payloads[:-1]]
    annotation, role, *contents, finish = chunks

    assert annotation["choices"] == [] and annotation["object"] == ""
    assert (annotation["id"], annotation["created"], annotation["model"]) == ("", 0, "")
    prompt_results = annotation["prompt_filter_results"][0]["content_filter_results"]
    assert prompt_results["jailbreak"] == {"filtered": False, "detected": False}
    assert {k: v for k, v in prompt_results.items() if k != "jailbreak"} == dict.fromkeys(
        SEVERITY, SAFE
    )
    assert "obfuscation" not in annotation and "usage" not in annotation

    real = [role, *contents, finish]
    assert len({c["id"] for c in real}) == 1 and re.fullmatch(r"chatcmpl-\w{29}", role["id"])
    assert len({c["created"] for c in real}) == 1 and role["created"] > 0
    for chunk in real:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "gpt-4o-mini-2024-07-18"
        assert re.fullmatch(r"fp_[0-9a-f]{10}", chunk["system_fingerprint"])
        assert OBFUSCATION.fullmatch(chunk["obfuscation"])
        assert "usage" not in chunk
    assert role["choices"] == [
        {
            "content_filter_results": {},
            "delta": {"content": "", "refusal": None, "role": "assistant"},
            "finish_reason": None,
            "index": 0,
            "logprobs": None,
        }
    ]
    assert [c["choices"][0]["delta"]["content"] for c in contents] == FIRST_WORDS
    for chunk in contents:
        assert chunk["choices"][0]["content_filter_results"] == dict.fromkeys(SEVERITY, SAFE)
    assert finish["choices"] == [
        {
            "content_filter_results": {},
            "delta": {},
            "finish_reason": "stop",
            "index": 0,
            "logprobs": None,
        }
    ]

    headers = response.headers
    assert headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
    assert headers["x-ms-deployment-name"] == "gpt-4o"
    assert headers["x-accel-buffering"] == "no"
    assert headers["x-ms-rai-invoked"] == "true"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    for name in ("apim-request-id", "x-request-id", "x-ms-region", "azureml-model-session"):
        assert headers[name]
    for name in ("limit-requests", "limit-tokens", "remaining-requests", "remaining-tokens"):
        assert int(headers[f"x-ratelimit-{name}"]) >= 0

    stats = stats_of(sim)
    assert (stats.streams_started, stats.streams_completed, stats.open_streams) == (1, 1, 0)


async def test_include_usage_adds_null_usage_and_a_final_usage_chunk(sim: Client) -> None:
    _, payloads = await stream(sim, body=WITH_USAGE)
    assert payloads[-1] == "[DONE]"
    annotation, *real, usage_chunk = [load(p) for p in payloads[:-1]]
    assert "usage" not in annotation
    assert all("usage" in c and c["usage"] is None for c in real)
    assert usage_chunk["choices"] == [] and usage_chunk["id"] == real[0]["id"]
    usage = usage_chunk["usage"]
    assert usage == stats_of(sim).last_usage
    assert usage["completion_tokens"] == 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + 6
    assert usage["prompt_tokens_details"] == {"audio_tokens": 0, "cached_tokens": 0}
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_the_same_request_gives_the_same_text(sim: Client) -> None:
    texts = []
    for _ in range(2):
        _, payloads = await stream(sim, "tokens=40")
        texts.append(content_of([load(p) for p in payloads[:-1]]))
    assert texts[0] == texts[1]
    assert texts[0].startswith("".join(FIRST_WORDS)) and "naïve" in texts[0]


async def test_token_limit_and_length_scenario_finish_with_length(sim: Client) -> None:
    _, payloads = await stream(sim, body={**WITH_USAGE, "max_tokens": 3})
    chunks = [load(p) for p in payloads[:-1]]
    assert content_of(chunks) == "".join(FIRST_WORDS[:3])
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 3

    _, payloads = await stream(sim, "scenario=length", {**STREAM, "max_completion_tokens": 50})
    chunks = [load(p) for p in payloads[:-1]]
    assert content_of(chunks) == "".join(FIRST_WORDS)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_tool_call_stream(sim: Client) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    _, payloads = await stream(sim, "scenario=tool_calls", {**STREAM, "tools": [tool]})
    _, role, start, *fragments, finish = [load(p) for p in payloads[:-1]]
    assert role["choices"][0]["delta"] == {"content": None, "role": "assistant"}
    call = start["choices"][0]["delta"]["tool_calls"][0]
    assert call["function"] == {"arguments": "", "name": "lookup"}
    assert re.fullmatch(r"call_\w+", call["id"]) and call["type"] == "function"
    assert len(fragments) == 6
    pieces = [f["choices"][0]["delta"]["tool_calls"][0] for f in fragments]
    assert all(set(p) == {"function", "index"} and p["index"] == 0 for p in pieces)
    arguments = json.loads("".join(p["function"]["arguments"] for p in pieces))
    assert isinstance(arguments, dict)
    assert finish["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("category", ["violence", "protected_material_text"])
async def test_output_filter_ends_the_stream_with_content_filter(
    sim: Client, category: str
) -> None:
    _, payloads = await stream(sim, f"scenario=content_filter; category={category}")
    assert payloads[-1] == "[DONE]"
    chunks = [load(p) for p in payloads[:-1]]
    assert content_of(chunks) == "".join(FIRST_WORDS[:3])
    choice = chunks[-1]["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["delta"] == {}
    results = choice["content_filter_results"]
    expected = {"filtered": True, "severity": "medium"}
    if category not in SEVERITY:
        expected = {"filtered": True, "detected": True}
    assert results[category] == expected
    assert all(results[c] == SAFE for c in SEVERITY - {category})


async def test_error_event_and_no_done(sim: Client) -> None:
    _, payloads = await stream(sim, "scenario=error_event")
    assert json.loads(payloads[-1]) == {
        "error": {
            "message": "The server had an error processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert content_of([load(p) for p in payloads[:-1]]) == "".join(FIRST_WORDS[:3])

    _, payloads = await stream(sim, "no_done=1")
    assert "[DONE]" not in payloads
    assert load(payloads[-1])["choices"][0]["finish_reason"] == "stop"
    assert stats_of(sim).streams_completed == 2


async def test_trailing_annotation_in_default_mode(sim: Client) -> None:
    _, payloads = await stream(sim, "trailing_annotation=1", WITH_USAGE)
    *_, finish, annotation, usage = [load(p) for p in payloads[:-1]]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert is_annotation(annotation) and (annotation["object"], annotation["created"]) == ("", 0)
    choice = annotation["choices"][0]
    assert choice["finish_reason"] is None and choice["content_filter_offsets"]
    assert choice["content_filter_results"] == dict.fromkeys(SEVERITY, SAFE)
    assert usage["usage"]["completion_tokens"] == 6


async def test_async_filter_mode_annotates_every_five_chunks_and_after_the_finish(
    sim: Client,
) -> None:
    _, payloads = await stream(sim, "filter_mode=async; tokens=12")
    chunks = [load(p) for p in payloads[:-1]]
    kinds = ["A" if is_annotation(c) else "C" for c in chunks[2:]]
    assert "".join(kinds) == "CCCCCACCCCCACCCA"  # 12 contents, finish, trailing annotation
    for chunk in chunks[1:]:
        for choice in chunk["choices"]:
            if "delta" in choice:
                assert "content_filter_results" not in choice
    annotations = [c["choices"][0] for c in chunks if is_annotation(c)]
    text = content_of(chunks)
    prompt_chars = len("hi")  # offsets count from the start of the prompt
    first, second, trailing = (a["content_filter_offsets"] for a in annotations)
    assert first["start_offset"] == prompt_chars
    assert first["end_offset"] - first["start_offset"] == len(text_of_first(chunks, 5))
    assert second["start_offset"] == first["end_offset"] <= second["check_offset"]
    assert trailing["start_offset"] == prompt_chars
    assert trailing["end_offset"] == prompt_chars + len(text)
    assert first["check_offset"] <= second["check_offset"] <= trailing["check_offset"]
    assert all(a["finish_reason"] is None for a in annotations)


def text_of_first(chunks: list[dict[str, Any]], count: int) -> str:
    contents = [c for c in chunks if not is_annotation(c) and c["choices"]]
    return content_of(contents[1 : 1 + count])


async def test_async_filter_mode_content_filter_ends_with_a_flagged_annotation(
    sim: Client,
) -> None:
    _, payloads = await stream(sim, "filter_mode=async; scenario=content_filter; tokens=12")
    assert payloads[-1] == "[DONE]"
    chunks = [load(p) for p in payloads[:-1]]
    last = chunks[-1]
    assert is_annotation(last)
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert last["choices"][0]["content_filter_results"]["violence"]["filtered"] is True
    finishes = [
        c for c in chunks if c["choices"] and "delta" in c["choices"][0]
        and c["choices"][0]["finish_reason"]
    ]  # fmt: skip
    assert finishes == []


async def test_n_choices_interleave_one_choice_per_chunk(sim: Client) -> None:
    _, payloads = await stream(sim, "tokens=3", {**WITH_USAGE, "n": 2})
    chunks = [load(p) for p in payloads[:-1]][1:-1]
    assert all(len(c["choices"]) == 1 for c in chunks)
    indexes = [c["choices"][0]["index"] for c in chunks]
    assert indexes == [0, 1] * 5  # roles, 3 content steps, finishes
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[-2:]]
    assert finishes == ["stop", "stop"]
    assert content_of(chunks, 0) != content_of(chunks, 1)
    usage = stats_of(sim).last_usage
    assert usage is not None and usage["completion_tokens"] == 6


async def test_usage_reports_reasoning_and_cached_tokens(sim: Client) -> None:
    _, payloads = await stream(sim, "reasoning_tokens=10; cached_tokens=4", WITH_USAGE)
    usage = load(payloads[-2])["usage"]
    assert usage["completion_tokens"] == 16
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 10
    assert usage["prompt_tokens_details"]["cached_tokens"] == 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + 16


async def test_stamp_puts_each_chunks_send_time_in_obfuscation(sim: Client) -> None:
    _, payloads = await stream(sim, "stamp=1; tokens=20; token_delay_ms=1", WITH_USAGE)
    read_at = time.monotonic_ns() // 1000
    annotation, *real = [load(p) for p in payloads[:-1]]  # load() checks they stay valid
    assert "obfuscation" not in annotation
    for chunk in real:
        assert OBFUSCATION.fullmatch(chunk["obfuscation"]), chunk["obfuscation"]
    stamps = [int(chunk["obfuscation"]) for chunk in real]  # role, 20 content, finish, usage
    assert len(stamps) == 23 and stamps == sorted(stamps)
    # Microseconds of the reader's own monotonic clock, a little earlier (loose bound: this
    # checks the unit and the clock, not how fast the machine is).
    assert 0 <= read_at - stamps[-1] < 5_000_000
    # Only the padding changes: the text is the one an unstamped stream gets.
    _, plain = await stream(sim, "tokens=20")
    assert content_of(real) == content_of([load(p) for p in plain[:-1]])
    assert content_of(real).startswith("".join(FIRST_WORDS))


# ---------------------------------------------------------------------------------------------
# Pacing: pauses on an absolute schedule (a fake clock and sleep; nothing is timed)
# ---------------------------------------------------------------------------------------------


class _Recorder:
    """A response, a clock and a sleep that only record: each sleep wakes up `oversleep`
    late, as asyncio's sleeps do on a busy CPU, and writes of `slow` events take time."""

    def __init__(self, oversleep: float, slow: dict[bytes, float]) -> None:
        self.now = 100.0
        self.oversleep = oversleep
        self.slow = slow
        self.slept: list[float] = []
        self.written: list[tuple[bytes, float]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.now += seconds + self.oversleep

    async def write(self, data: bytes) -> None:
        self.written.append((data, self.now))
        self.now += self.slow.get(data, 0.0)


async def test_lateness_does_not_accumulate_over_a_stream() -> None:
    fake = _Recorder(oversleep=0.0005, slow={b"e3": 0.007})  # e3's write outlasts a pause
    events: list[bytes | float] = [b"e0", 0.2, b"e1", 0.005, b"e2", 0.005, b"e3", 0.005,
                                   b"e4", 0.005, b"e5", b"e6", 0.005, b"e7"]  # fmt: skip
    response = cast(web.StreamResponse, fake)
    assert await _write_events(response, iter(events), None, clock=fake.clock, sleep=fake.sleep)

    due = [100.0, 100.2, 100.205, 100.21, 100.215, 100.22, 100.22, 100.225]
    lateness = [at - when for (_, at), when in zip(fake.written, due, strict=True)]
    # Each write is late only by its own wake-up (or by the slow write just before it); with
    # a pause slept in full after every write, e7 would be 0.5 ms x 6 + 7 ms late.
    assert lateness == pytest.approx([0, 0.0005, 0.0005, 0.0005, 0.0025, 0.0005, 0.0005, 0.0005])
    # The pause after a late event is shortened by its lateness; none at all once past due.
    assert fake.slept == pytest.approx([0.2, 0.0045, 0.0045, 0.0, 0.0025, 0.0045])
    # What the stream slept plus what it lost (late wake-ups, the slow write) is the schedule
    # plus the last event's own lateness.
    lost = fake.oversleep * sum(1 for s in fake.slept if s > 0) + 0.007
    assert sum(fake.slept) + lost == pytest.approx(due[-1] - due[0] + lateness[-1])


# ---------------------------------------------------------------------------------------------
# Connections: disconnects, aborts, the gate, fairness
# ---------------------------------------------------------------------------------------------


async def test_disconnect_cuts_the_connection_mid_body(
    sim: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[bytes] = []
    headers = {"x-simulator": "scenario=disconnect; disconnect_after=2"}
    async with sim.post(CHAT, json=STREAM, headers=headers) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            while True:
                events.append(await response.content.readuntil(b"\n\n"))
                assert events[-1], "the body ended cleanly"
    # prompt annotation, role, two content chunks; no finish chunk, no [DONE]
    assert len(events) == 4
    assert b'"delta":{"content":" from"}' in events[-1]
    stats = stats_of(sim)
    assert (stats.streams_dropped, stats.streams_completed, stats.streams_aborted) == (1, 0, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_peer_going_away_counts_as_aborted_without_a_traceback(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = SimulatorConfig(tokens=200, token_delay=0.005)
    client = await aiohttp_client(create_simulator_app(config))
    response = await client.post(CHAT, json=STREAM)
    await response.content.readuntil(b"\n\n")
    response.close()
    stats = stats_of(client)
    await until(lambda: stats.streams_aborted == 1)
    assert (stats.streams_completed, stats.open_streams) == (0, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_gate_holds_every_event_until_released(aiohttp_client: AiohttpClient) -> None:
    gate = EventGate()
    client = await aiohttp_client(create_simulator_app(SimulatorConfig(tokens=1), gate=gate))
    async with client.post(CHAT, json=STREAM) as response:
        # Headers arrive while the first event is still held.
        assert response.status == 200
        received: list[bytes] = []
        for _ in range(5):  # prompt annotation, role, content, finish, [DONE]
            await until(lambda: gate.waiting == 1)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(response.content.readuntil(b"\n\n"), 0.05)
            gate.release()
            received.append(await response.content.readuntil(b"\n\n"))
        assert received[0].startswith(b'data: {"choices":[],"created":0')
        assert received[-1] == b"data: [DONE]\n\n"
        assert await response.content.read() == b""


async def test_gate_holds_a_non_streaming_answer(aiohttp_client: AiohttpClient) -> None:
    gate = EventGate()
    client = await aiohttp_client(create_simulator_app(gate=gate))
    request = asyncio.ensure_future(client.post(CHAT, json={"messages": MESSAGES}))
    await until(lambda: gate.waiting == 1)
    assert not request.done()
    gate.open()
    async with await request as response:
        assert (await response.json())["choices"][0]["finish_reason"] == "stop"


async def test_a_gapless_stream_does_not_starve_the_others(sim: Client) -> None:
    headers = {"x-simulator": "tokens=20000"}
    async with sim.post(CHAT, json=STREAM, headers=headers) as big:
        whole = asyncio.ensure_future(big.read())
        _, payloads = await stream(sim)
        assert payloads[-1] == "[DONE]"
        assert not whole.done(), "the short stream waited for the long one"
        assert (await whole).endswith(b"data: [DONE]\n\n")


async def test_serve_simulator_runs_until_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(serve_simulator("127.0.0.1", port, SimulatorConfig()))
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(5):
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/openai/v1/models") as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


async def test_unknown_deployment_and_path_give_azures_404s(sim: Client) -> None:
    path = f"/openai/deployments/nope/chat/completions?api-version={API_VERSION}"
    async with sim.post(path, json={"messages": MESSAGES}) as response:
        assert response.status == 404
        body = await response.json()
    assert body["error"]["code"] == "DeploymentNotFound"
    assert body["error"]["message"].startswith("The API deployment for this resource")
    for method, path in (("POST", "/openai/deployments/gpt-4o/unknown?api-version=x"),
                         ("GET", CHAT)):  # fmt: skip
        async with sim.request(method, path) as response:
            assert response.status == 404
            assert (
                await response.text() == '{"error":{"code":"404","message":"Resource not found"}}'
            )
            assert response.headers["apim-request-id"]


async def test_auth_accepts_api_key_bearer_and_both(aiohttp_client: AiohttpClient) -> None:
    config = SimulatorConfig(api_keys=(KEY,), bearer_tokens=("entra",))
    client = await aiohttp_client(create_simulator_app(config))
    cases = [
        ({"api-key": KEY}, 200),
        ({"Authorization": "Bearer entra"}, 200),
        ({"Authorization": f"Bearer {KEY}"}, 200),
        ({"api-key": KEY, "Authorization": f"Bearer {KEY}"}, 200),  # openai-python < 2.34
        ({}, 401),
        ({"api-key": "wrong"}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
    ]
    for headers, status in cases:
        async with client.post(CHAT, json={"messages": MESSAGES}, headers=headers) as response:
            assert response.status == status, headers
            if status == 401:
                error = (await response.json())["error"]
                assert error["code"] == "401"
                expected = "Unauthorized" if "Authorization" in headers else "Access denied"
                assert error["message"].startswith(expected)


@pytest.mark.parametrize(
    ("control", "named"),
    [
        ("colour=blue", "colour"),
        ("tokens=-1", "tokens"),
        ("tokens=many", "tokens"),
        ("scenario=explode", "scenario"),
        ("filter_mode=sync", "filter_mode"),
        ("category=violence", "category"),  # a category means nothing to scenario=stop
        ("scenario=rate_limit; scenario=stop", "scenario"),
        ("tokens", "tokens"),
    ],
)
async def test_bad_control_header_is_a_400_naming_the_key(
    sim: Client, control: str, named: str
) -> None:
    async with sim.post(CHAT, json=STREAM, headers={"x-simulator": control}) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == f"x-simulator.{named}"
    assert error["message"].startswith(f"x-simulator: {named}:")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/openai/deployments/gpt-4o/chat/completions", {"messages": MESSAGES}, "api-version"),
        (CHAT, b"{not json", "parse the JSON body"),
        (CHAT, {"messages": []}, "'messages'"),
        (CHAT, {"messages": MESSAGES, "stream_options": {"include_usage": True}}, "'stream'"),
        ("/openai/v1/chat/completions", {"messages": MESSAGES}, "model"),
    ],
)
async def test_malformed_requests_are_400s_in_azure_shape(
    sim: Client, path: str, body: dict[str, Any] | bytes, message: str
) -> None:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with sim.post(path, **kwargs) as response:
        assert response.status == 400
        assert response.headers["Content-Type"] == "application/json"
        error = (await response.json())["error"]
    assert message in error["message"]


@pytest.mark.parametrize(
    ("api_version", "status"),
    [("2024-02-01", 400), ("2024-06-01", 400), ("2024-08-01-preview", 400),
     ("2024-09-01-preview", 200), ("2024-10-21", 200), ("2025-04-01-preview", 200)],
)  # fmt: skip
async def test_old_api_versions_reject_stream_options(
    sim: Client, api_version: str, status: int
) -> None:
    path = f"/openai/deployments/gpt-4o/chat/completions?api-version={api_version}"
    async with sim.post(path, json=WITH_USAGE) as response:
        assert response.status == status
        if status == 400:
            assert await response.text() == (
                '{"error":{"message":"Unrecognized request argument supplied: stream_options",'
                '"type":"invalid_request_error","param":null,"code":null}}'
            )
    async with sim.post("/openai/v1/chat/completions", json={**WITH_USAGE, "model": "gpt-4o"}) as r:
        assert r.status == 200


async def test_rate_limit_remaining_requests_go_down(sim: Client) -> None:
    remaining = []
    for _ in range(3):
        async with sim.post(CHAT, json={"messages": MESSAGES}) as response:
            remaining.append(int(response.headers["x-ratelimit-remaining-requests"]))
    assert remaining[0] > remaining[1] > remaining[2]


async def test_requests_are_recorded(sim: Client) -> None:
    await stream(sim, "tokens=1")
    recorded = stats_of(sim).requests[-1]
    assert (recorded.method, recorded.path_qs) == ("POST", CHAT)
    assert recorded.headers["x-simulator"] == "tokens=1"
    assert json.loads(recorded.body) == STREAM


# ---------------------------------------------------------------------------------------------
# The real openai client
# ---------------------------------------------------------------------------------------------


async def test_openai_client_streams_and_completes(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as client:
        chunks = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        text, reasons, usage = "", [], None
        async for chunk in chunks:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                reasons += [choice.finish_reason] if choice.finish_reason else []
            usage = chunk.usage or usage
        assert (text, reasons) == ("".join(FIRST_WORDS), ["stop"])
        assert usage is not None and usage.completion_tokens == 6

        completion = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, n=2, extra_headers={"x-simulator": "tokens=3"}
        )
        assert completion.choices[0].message.content == "".join(FIRST_WORDS[:3])
        assert [c.finish_reason for c in completion.choices] == ["stop", "stop"]
        assert completion.usage is not None and completion.usage.completion_tokens == 6
        assert completion.model == "gpt-4o-mini-2024-07-18"


async def test_openai_client_sees_finish_reasons_of_each_scenario(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as client:
        for scenario in ("length", "content_filter", "tool_calls"):
            headers = {"x-simulator": f"scenario={scenario}"}
            completion = await client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, extra_headers=headers
            )
            assert completion.choices[0].finish_reason == scenario
            chunks = await client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=headers
            )
            reasons = [c.finish_reason async for k in chunks for c in k.choices if c.finish_reason]
            assert reasons == [scenario]
        call = completion.choices[0].message.tool_calls
        assert call is not None and json.loads(call[0].function.arguments)  # type: ignore[union-attr]
        filtered = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            extra_headers={"x-simulator": "scenario=content_filter; category=hate"},
        )
        results = filtered.choices[0].model_extra or {}
        assert results["content_filter_results"]["hate"] == {"filtered": True, "severity": "medium"}


async def test_openai_client_in_async_filter_mode(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as client:
        chunks = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-simulator": "filter_mode=async; tokens=10"},
        )
        text, annotations = "", 0
        async for chunk in chunks:
            for choice in chunk.choices:
                if chunk.id == "":
                    annotations += 1
                else:
                    text += choice.delta.content or ""
        assert annotations == 3 and text.startswith("".join(FIRST_WORDS))


async def test_openai_client_errors(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                extra_headers={"x-simulator": "scenario=rate_limit; retry_after_s=2.5"},
            )
        headers = limited.value.response.headers
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("3", "2500")
        assert headers["x-ratelimit-remaining-tokens"] == "0"
        assert limited.value.code == "429"
        assert "retry after 3 seconds" in limited.value.message

        with pytest.raises(openai.BadRequestError) as blocked:
            await client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                extra_headers={"x-simulator": "scenario=prompt_filter; category=jailbreak"},
            )
        assert blocked.value.code == "content_filter" and blocked.value.param == "prompt"
        inner = blocked.value.body["innererror"]  # type: ignore[index]
        assert inner["code"] == "ResponsibleAIPolicyViolation"
        assert inner["content_filter_result"]["jailbreak"] == {"filtered": True, "detected": True}
        assert inner["content_filter_result"]["self_harm"] == SAFE

        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                extra_headers={"x-simulator": "scenario=server_error"},
            )
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="gpt-9", messages=MESSAGES)

    bad_key = openai.AsyncAzureOpenAI(
        azure_endpoint=str(server.make_url("")), api_key="wrong", api_version=API_VERSION
    )
    async with bad_key:
        with pytest.raises(openai.AuthenticationError):
            await bad_key.chat.completions.create(model="gpt-4o", messages=MESSAGES)


async def test_openai_client_sees_mid_stream_failures(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as client:
        text = ""
        chunks = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-simulator": "scenario=error_event"},
        )
        with pytest.raises(openai.APIError, match="The server had an error"):
            async for chunk in chunks:
                text += "".join(c.delta.content or "" for c in chunk.choices)
        assert text == "".join(FIRST_WORDS[:3])

        chunks = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-simulator": "scenario=disconnect"},
        )
        reasons = []
        with pytest.raises(openai.APIConnectionError):
            async for chunk in chunks:
                reasons += [c.finish_reason for c in chunk.choices if c.finish_reason]
        assert reasons == []


async def test_openai_client_embeddings_in_base64_and_float(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as client:
        packed = await client.embeddings.create(model="gpt-4o", input=["hello", "world"])
        plain = await client.embeddings.create(
            model="gpt-4o", input=["hello", "world"], encoding_format="float"
        )
    assert [d.index for d in packed.data] == [0, 1]
    assert [d.embedding for d in packed.data] == [d.embedding for d in plain.data]
    first = packed.data[0].embedding
    assert len(first) == 1536 and math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-4)
    assert packed.data[0].embedding != packed.data[1].embedding
    assert packed.usage.prompt_tokens == packed.usage.total_tokens > 0


async def test_openai_v1_client_chat_and_models(server: TestServer) -> None:
    base_url = str(server.make_url("/openai/v1/"))
    async with openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0) as client:
        page = await client.models.list()
        assert [m.id for m in page.data] == ["gpt-4o", "gpt-4o-mini"]
        chunks = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        text = "".join([c.delta.content or "" async for k in chunks for c in k.choices])
        assert text == "".join(FIRST_WORDS)
        vectors = await client.embeddings.create(model="gpt-4o-mini", input="x")
        assert len(vectors.data[0].embedding) == 1536
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="gpt-9", messages=MESSAGES)


async def test_legacy_completions(server: TestServer) -> None:
    async with azure_client(server, API_VERSION) as client:
        completion = await client.completions.create(model="gpt-4o", prompt="Say", max_tokens=4)
    assert completion.choices[0].text == "".join(FIRST_WORDS[:4])
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
