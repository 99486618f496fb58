"""Property tests: the SSE observer over random bytes cut anywhere, and random request targets
through a running proxy."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import astuple, dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.app import create_app
from proxy.config import Config, UpstreamConfig
from proxy.observe.observer import StreamObserver
from proxy.observe.semantics import Observation
from proxy.runtime.server import start
from tests.faults.faultkit import (
    DONE,
    RawRequest,
    RawUpstream,
    chunk_event,
    raw_exchange,
    request_bytes,
)

T = TypeVar("T")
MAX_EVENT = 512

# --- the observer ------------------------------------------------------------------------------

PIECES = st.one_of(
    st.builds(lambda i, text: chunk_event(i, content=text), st.integers(0, 3), st.text(max_size=30)),
    st.builds(lambda r: chunk_event(0, finish=r), st.sampled_from(
        ["stop", "length", "content_filter", "tool_calls", "weird"])),
    st.just(DONE),
    st.just(b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}\n\n'),
    st.just(b'data: {"error":{"code":"server_error","message":"x"}}\n\n'),
    st.just(b"data: " + b"{" * 600 + b"\n\n"),
    st.just(b": keep-alive\n\n"),
    st.just(b"\xef\xbb\xbf"),
    st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n", b"data:", b"event: error\n", b"data: "]),
    st.binary(max_size=64).map(lambda b: b"data: " + b + b"\n\n"),
    st.binary(max_size=64),
)
STREAMS = st.one_of(
    st.binary(max_size=3000),
    st.lists(PIECES, max_size=40).map(b"".join),
    st.tuples(st.lists(PIECES, max_size=40).map(b"".join), st.sampled_from(
        [b"\n", b"\r\n", b"\r"])).map(lambda t: t[0].replace(b"\n", t[1])),
)


def observe(pieces: list[bytes]) -> Observation:
    observer = StreamObserver(max_event_bytes=MAX_EVENT, clock=lambda: 1.0)
    for piece in pieces:
        observer.feed(piece)
    return observer.close()


def meaning(obs: Observation) -> tuple[Any, ...]:
    return astuple(obs)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=200, deadline=None)
@given(data=STREAMS, cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_observer_never_raises_and_any_split_means_the_same(data: bytes,
                                                            cuts: list[int]) -> None:
    whole = observe([data])
    assert meaning(observe(split(data, cuts))) == meaning(whole)
    assert meaning(observe([bytes([b]) for b in data[:600]])) == meaning(observe([data[:600]]))


# --- request targets through a running proxy ---------------------------------------------------


class LoopThread:
    """An event loop in a thread, for servers that outlive one hypothesis example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def body_for(target: bytes) -> bytes:
    """What the recorded upstream answers: every byte value, in an order set by the target."""
    seed = hashlib.sha256(target).digest()
    return seed + bytes((seed[i % 32] + i) % 256 for i in range(512))


@dataclass
class Servers:
    thread: LoopThread
    upstream: RawUpstream
    port: int


@pytest.fixture
def servers() -> Iterator[Servers]:
    thread = LoopThread()

    async def answer(request: RawRequest) -> None:
        await request.conn.send_response(200, body_for(request.target),
                                         [("Content-Type", "application/octet-stream")])

    async def setup() -> tuple[RawUpstream, Any, int]:
        upstream = await RawUpstream(answer).start()
        # ui=False: with the page on, `GET /` is the proxy's own, not forwarded.
        config = Config(upstreams=(UpstreamConfig("primary", upstream.url),), access_log=False,
                        ui=False)
        runner, port = await start(create_app(config), "127.0.0.1", 0)
        return upstream, runner, port

    upstream, runner, port = thread.run(setup())
    try:
        yield Servers(thread, upstream, port)
    finally:
        thread.run(runner.cleanup())
        thread.run(upstream.close())
        thread.close()


TARGET_BYTES = st.one_of(
    st.binary(min_size=1, max_size=1).filter(lambda b: b not in b" \r\n"),
    st.sampled_from([b"%", b"%2F", b"%2e", b"%00", b"%0d%0a", b"%zz", b"..", b"/", b"?", b"#",
                     b"&", b"=", b"@", b":", b"\\", b"%C3%A9", "é".encode(), b"\xff"]),
)
TARGETS = st.lists(TARGET_BYTES, max_size=40).map(lambda parts: b"/" + b"".join(parts))


def same_target(sent: bytes) -> set[bytes]:
    """What the upstream may see for `sent`: it without its fragment (never sent on), and
    without a `?` that opens an empty query (the same URL)."""
    target = sent.split(b"#", 1)[0]
    if target.endswith(b"?") and target.count(b"?") == 1:
        return {target, target[:-1]}
    return {target}


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=TARGETS, method=st.sampled_from(["GET", "POST", "DELETE"]))
def test_random_targets_are_forwarded_exactly_or_refused_never_500(
        servers: Servers, target: bytes, method: str) -> None:
    before = len(servers.upstream.requests)
    client = servers.thread.run(raw_exchange(servers.port, request_bytes(
        method, target, body=b"{}" if method == "POST" else b"")))
    response = client.response
    assert response.status is not None, bytes(response.raw[:200])
    assert response.status < 500, (response.status, bytes(response.body[:300]))
    forwarded = servers.upstream.requests[before:]
    if response.status == 200:
        assert len(forwarded) == 1
        assert forwarded[0].target in same_target(target)
        assert bytes(response.body) == body_for(forwarded[0].target)
        assert response.complete
    else:
        assert 400 <= response.status < 500 and forwarded == []
