"""`simulate --rpm/--tpm`: the simulator answers over quota as Azure does, honestly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from proxy.simulator import SimulatorConfig
from tests.conftest import Running, chat_path

BODY = {"messages": [{"role": "user", "content": "hi"}]}


async def test_over_its_rpm_the_simulator_answers_429_with_the_real_wait(
        start_simulator: Callable[..., Awaitable[Running]],
        http: aiohttp.ClientSession) -> None:
    simulator = await start_simulator(SimulatorConfig(rpm=2, tpm=100_000))
    remaining = []
    for _ in range(2):
        async with http.post(simulator.url + chat_path(), json=BODY) as response:
            assert response.status == 200
            assert response.headers["x-ratelimit-limit-requests"] == "2"
            remaining.append(response.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["1", "0"]
    async with http.post(simulator.url + chat_path(), json=BODY) as response:
        body = await response.json()
        assert response.status == 429 and body["error"]["code"] == "429"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        wait_ms = int(response.headers["retry-after-ms"])
        assert 55_000 < wait_ms <= 60_000  # the first request leaves the window in ~60 s
        assert response.headers["retry-after"] == str(-(-wait_ms // 1000))
        assert int(response.headers["x-ratelimit-remaining-tokens"]) < 100_000
