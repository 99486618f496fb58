"""`require_client_auth`: a request whose api-key / bearer token matches no configured client
gets a 401 in Azure's shape and never reaches the upstream."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable

import pytest

from proxy.config import ClientConfig
from tests.conftest import Running
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import (
    API_VERSION,
    CHAT_PATH,
    STREAM_BODY_WITH_USAGE,
    RawClient,
    RawRequest,
    answer_ok,
    assert_azure_error,
    port_of,
    raw_exchange,
    request_bytes,
    total,
)

KEY = "proxy-key-of-app-a-4c1d"
OTHER_KEY = "proxy-key-of-app-b-9e07"
AZURE_KEY = "azure-resource-key-77f2"
DIGEST = hashlib.sha256(KEY.encode()).hexdigest()

REJECTED: dict[str, list[tuple[str, str]]] = {
    "no-credentials": [],
    "wrong-api-key": [("api-key", "not-a-client-key")],
    "wrong-bearer": [("Authorization", "Bearer not-a-client-key")],
    "empty-api-key": [("api-key", "")],
    "empty-bearer": [("Authorization", "Bearer ")],
    "basic-auth": [("Authorization", "Basic " + base64.b64encode(f"a:{KEY}".encode()).decode())],
    "key-in-other-case": [("api-key", KEY.upper())],
    "key-with-suffix": [("api-key", KEY + "x")],
    "key-prefix": [("api-key", KEY[:-1])],
    "sha256-of-the-key": [("api-key", DIGEST)],
    "the-azure-key": [("api-key", AZURE_KEY)],
    "bearer-without-scheme": [("Authorization", KEY)],
    "key-in-query-only": [],
}
ACCEPTED: dict[str, list[tuple[str, str]]] = {
    "api-key": [("api-key", KEY)],
    "bearer": [("Authorization", f"Bearer {KEY}")],
    "lowercase-bearer-scheme": [("Authorization", f"bearer {KEY}")],
    "second-client": [("api-key", OTHER_KEY)],
}


async def auth_proxy(raw_upstream: StartRawUpstream,
                     start_proxy: Callable[..., Awaitable[Running]]
                     ) -> tuple[Running, int, list[RawRequest]]:
    upstream = await raw_upstream(answer_ok)
    proxy = await start_proxy(
        upstream.url, api_key=AZURE_KEY, require_client_auth=True,
        clients=(ClientConfig("app-a", DIGEST),
                 ClientConfig("app-b", hashlib.sha256(OTHER_KEY.encode()).hexdigest())))
    return proxy, port_of(proxy.url), upstream.requests


@pytest.mark.parametrize("method, path", [
    ("POST", CHAT_PATH), ("GET", "/openai/v1/models"),
    ("POST", f"/openai/deployments/gpt-4o/embeddings?api-version={API_VERSION}"),
])
@pytest.mark.parametrize("case", list(REJECTED))
async def test_requests_without_a_client_key_get_401_and_never_reach_the_upstream(
        case: str, method: str, path: str, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    proxy, port, upstream_requests = await auth_proxy(raw_upstream, start_proxy)
    if case == "key-in-query-only":
        path += ("&" if "?" in path else "?") + f"api-key={KEY}"
    body = STREAM_BODY_WITH_USAGE if method == "POST" else b""
    client = await raw_exchange(port, request_bytes(method, path, body=body,
                                                    headers=REJECTED[case]))
    response = client.response
    assert_azure_error(response.status, response.header("Content-Type"), bytes(response.body),
                       401)
    assert upstream_requests == []
    assert total(proxy.registry, "aoai_proxy_requests_total", status_code="401",
                 client="unknown") == 1


@pytest.mark.parametrize("case", list(ACCEPTED))
async def test_requests_with_a_client_key_are_forwarded(
        case: str, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    _, port, upstream_requests = await auth_proxy(raw_upstream, start_proxy)
    client = await raw_exchange(port, request_bytes("POST", CHAT_PATH,
                                                    body=STREAM_BODY_WITH_USAGE,
                                                    headers=ACCEPTED[case]))
    assert client.response.status == 200
    assert len(upstream_requests) == 1
    forwarded = upstream_requests[0]
    assert forwarded.header("api-key") == AZURE_KEY
    assert forwarded.header("Authorization") is None


async def test_a_rejected_request_is_answered_without_reading_its_body(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    """The 401 comes before the (never sent) 10 MB body: an unauthenticated client cannot make
    the proxy read, buffer or wait for anything."""
    _, port, upstream_requests = await auth_proxy(raw_upstream, start_proxy)
    client = await RawClient.connect(port)
    await client.send(request_bytes("POST", CHAT_PATH, headers=[
        ("Content-Length", str(10 * 1024 * 1024)), ("api-key", "nope")], close=False))
    assert await client.read_until(lambda r: r.complete, timeout=2), client.response
    assert client.response.status == 401
    await client.aclose()
    assert upstream_requests == []


async def test_own_endpoints_need_no_client_key(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    _, port, upstream_requests = await auth_proxy(raw_upstream, start_proxy)
    for path in ("/healthz", "/readyz", "/metrics"):
        client = await raw_exchange(port, request_bytes("GET", path))
        assert client.response.status == 200, path
    assert upstream_requests == []
