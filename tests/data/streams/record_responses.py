"""Re-record the simulator's Responses streams: `python3 -m tests.data.streams.record_responses`.

Each `responses-*.sse` file is the raw body of one `POST /openai/v1/responses` stream from the
built-in simulator, under the `x-simulator` options listed here. Ids are random, so a re-recording
differs from the committed files in ids only; the tests' expectations do not depend on them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from proxy.runtime.server import start
from proxy.simulator import SimulatorConfig, create_simulator_app

HERE = Path(__file__).parent
REQUEST = {"model": "gpt-4o", "input": "Tell me about streams.", "stream": True,
           "tools": [{"type": "function", "name": "get_weather", "parameters": {}}]}
RECORDINGS = {
    "responses-completed.sse": "tokens=6; cached_tokens=4",
    "responses-max-output-tokens.sse": "scenario=length; tokens=6",
    "responses-content-filter-incomplete.sse":
        "scenario=content_filter; tokens=6; category=hate; filter_ending=incomplete",
    "responses-content-filter-kill.sse": "scenario=content_filter; tokens=6",
    "responses-tool-call.sse": "scenario=tool_calls; tokens=6",
    "responses-reasoning.sse": "tokens=5; reasoning_tokens=40; cached_tokens=8",
    "responses-error-frame.sse": "scenario=error_event; tokens=6",
    "responses-failed.sse": "scenario=error_event; tokens=6; error_ending=failed",
}


async def record() -> None:
    app = create_simulator_app(SimulatorConfig(deployments=("gpt-4o",)))
    runner, port = await start(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            for name, options in RECORDINGS.items():
                async with http.post(f"http://127.0.0.1:{port}/openai/v1/responses",
                                     json=REQUEST, headers={"api-key": "k",
                                                            "x-simulator": options}) as response:
                    assert response.status == 200, (name, await response.text())
                    (HERE / name).write_bytes(await response.read())
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(record())
