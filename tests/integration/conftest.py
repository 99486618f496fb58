"""What the simulator's own tests (chat in test_simulator, Responses in
test_simulator_responses) share: the key, an in-process simulator and a bounded wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from proxy.simulator import SimulatorConfig, create_simulator_app

KEY = "key-1"

Client = TestClient[web.Request, web.Application]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a state change the test cannot await directly (bounded)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
async def sim(aiohttp_client: AiohttpClient) -> Client:
    """A simulator without keys, called through aiohttp's test client."""
    return await aiohttp_client(create_simulator_app(SimulatorConfig(tokens=6)))


@pytest.fixture
async def server(aiohttp_server: AiohttpServer) -> TestServer:
    """A simulator on a real socket that wants `KEY`, for openai-python."""
    return await aiohttp_server(create_simulator_app(SimulatorConfig(tokens=6, api_keys=(KEY,))))


@asynccontextmanager
async def azure_client(server: TestServer,
                       api_version: str) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    """openai-python's Azure client on the simulator `server`, without its own retries."""
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=str(server.make_url("")),
        api_key=KEY,
        api_version=api_version,
        max_retries=0,
    ) as client:
        yield client
