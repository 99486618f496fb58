"""Request targets and Host tricks never make the proxy talk to anything but its upstream.

A 'canary' server listens on another port; every trick names it. It must never receive a
connection, the configured upstream must see only origin-form targets with its own Host, and
the proxy must never answer 500 itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Running
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import (
    API_VERSION,
    RawUpstream,
    answer_ok,
    port_of,
    raw_exchange,
    request_bytes,
)

OP = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
CANARY = "CANARY"
"""Replaced by the canary's host:port in every target and header below."""

ABSOLUTE = {
    "absolute-form": f"http://{CANARY}{OP}",
    "absolute-form-upper-scheme": f"HTTP://{CANARY}{OP}",
    "absolute-form-https": f"https://{CANARY}{OP}",
    "absolute-form-userinfo": f"http://user:pw@{CANARY}{OP}",
    "absolute-form-no-path": f"http://{CANARY}",
    "absolute-form-query-only": f"http://{CANARY}?api-version={API_VERSION}",
}
ORIGIN = {
    "dot-dot": "/openai/../../x",
    "dot-dot-into-canary": f"/openai/../../{CANARY}/x",
    "encoded-dot-dot": "/openai/%2e%2e/%2e%2e/x",
    "encoded-dot-dot-upper": "/openai/%2E%2E%2F%2E%2E%2Fx",
    "encoded-slashes": "/openai%2Fdeployments%2Fgpt-4o%2F..%2F..%2F",
    "double-slash-authority": f"//{CANARY}{OP}",
    "triple-slash": f"///{CANARY}{OP}",
    "at-sign": f"/@{CANARY}{OP}",
    "encoded-at-sign": f"/%40{CANARY}{OP}",
    "backslash": f"/\\{CANARY}{OP}",
    "url-in-query": f"{OP}&next=http://{CANARY}/",
    "fragment-authority": f"/#@{CANARY}",
    "query-authority": f"/?@{CANARY}",
    "encoded-crlf-host": "/openai/x%0d%0aHost:%20" + CANARY,
    "percent-garbage": "/%zz%%%/x?%",
    "overlong-utf8-dot": "/%c0%ae%c0%ae/x",
}
HOST_TRICKS: dict[str, list[tuple[str, str]]] = {
    "host-is-canary": [],
    "forwarded-host": [("X-Forwarded-Host", CANARY), ("Forwarded", f"host={CANARY}")],
    "rewrite-headers": [("X-Original-URL", f"http://{CANARY}/"),
                        ("X-Rewrite-URL", f"http://{CANARY}/")],
    "host-with-userinfo": [],
}


async def start(raw_upstream: StartRawUpstream,
                start_proxy: Callable[..., Awaitable[Running]]
                ) -> tuple[RawUpstream, RawUpstream, int]:
    canary = await raw_upstream(answer_ok)
    upstream = await raw_upstream(answer_ok)
    proxy = await start_proxy(upstream.url)
    return canary, upstream, port_of(proxy.url)


async def send(port: int, canary: RawUpstream, target: str, trick: str) -> int | None:
    where = f"127.0.0.1:{canary.port}"
    host = {"host-is-canary": where, "host-with-userinfo": f"u@{where}"}.get(trick, "proxy.test")
    headers = [(k, v.replace(CANARY, where)) for k, v in HOST_TRICKS[trick]]
    client = await raw_exchange(port, request_bytes(
        "POST", target.replace(CANARY, where), body=b'{"messages":[]}', host=host,
        headers=headers))
    return client.response.status


def assert_only_the_upstream_was_asked(canary: RawUpstream, upstream: RawUpstream) -> None:
    assert canary.conns == [], [r.target for r in canary.requests]
    for request in upstream.requests:
        assert request.target.startswith(b"/"), request.target
        assert request.header("Host") == f"127.0.0.1:{upstream.port}", request.headers
        assert b"\r" not in request.target and b"\n" not in request.target


@pytest.mark.parametrize("trick", list(HOST_TRICKS))
@pytest.mark.parametrize("name", [*ABSOLUTE, *ORIGIN])
async def test_no_target_or_host_trick_reaches_another_host(
        name: str, trick: str, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    canary, upstream, port = await start(raw_upstream, start_proxy)
    await send(port, canary, {**ABSOLUTE, **ORIGIN}[name], trick)
    assert_only_the_upstream_was_asked(canary, upstream)


@pytest.mark.parametrize("name", list(ORIGIN))
async def test_origin_form_targets_go_upstream_byte_for_byte(
        name: str, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    canary, upstream, port = await start(raw_upstream, start_proxy)
    target = ORIGIN[name].replace(CANARY, f"127.0.0.1:{canary.port}")
    status = await send(port, canary, ORIGIN[name], "host-is-canary")
    assert status is not None and status != 500
    if status == 200:
        sent = target.split("#", 1)[0].encode()  # a fragment is never sent on
        assert [r.target for r in upstream.requests] == [sent]
    else:
        assert 400 <= status < 500 and upstream.requests == []


@pytest.mark.parametrize("name", list(ABSOLUTE))
async def test_absolute_form_targets_are_forwarded_as_their_path_or_refused_not_500(
        name: str, raw_upstream: StartRawUpstream,
        start_proxy: Callable[..., Awaitable[Running]]) -> None:
    """RFC 9112 3.2.2: a server must accept absolute-form; a reverse proxy forwards its path
    and query to its own upstream (or refuses with a 4xx), never fails with a 500."""
    canary, upstream, port = await start(raw_upstream, start_proxy)
    status = await send(port, canary, ABSOLUTE[name], "host-is-canary")
    assert status is not None and status < 500, status
    if status == 200:
        target = ABSOLUTE[name].split(CANARY, 1)[1] or "/"
        assert [r.target for r in upstream.requests] == [
            target.encode() if target.startswith("/") else b"/" + target.encode()]
    assert_only_the_upstream_was_asked(canary, upstream)
