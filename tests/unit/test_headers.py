from __future__ import annotations

import hashlib

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.relay.headers import (
    client_response_headers,
    credential,
    credential_digest,
    is_event_stream,
    upstream_request_headers,
)


def h(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


CLIENT = h(("Host", "proxy:8080"), ("api-key", "client-key"),
           ("Authorization", "Bearer client-key"), ("Connection", "keep-alive, X-Hop"),
           ("X-Hop", "1"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
           ("Content-Length", "12"), ("X-Stainless-Lang", "python"),
           ("User-Agent", "AzureOpenAI/Python 2.54.0"), ("Accept", "application/json"))


def test_hop_by_hop_and_host_dropped_end_to_end_kept() -> None:
    out = upstream_request_headers(CLIENT, api_key=None, client_ip="10.0.0.5", scheme="http")
    for gone in ("Host", "Connection", "X-Hop", "Keep-Alive", "TE", "Content-Length"):
        assert gone not in out
    assert out["X-Stainless-Lang"] == "python"
    assert out["User-Agent"] == "AzureOpenAI/Python 2.54.0"
    assert out["X-Forwarded-For"] == "10.0.0.5"
    assert out["X-Forwarded-Proto"] == "http"


def test_client_credentials_pass_when_proxy_holds_no_key() -> None:
    out = upstream_request_headers(CLIENT, api_key=None, client_ip=None, scheme="http")
    assert out["api-key"] == "client-key"
    assert out["Authorization"] == "Bearer client-key"


def test_configured_key_replaces_every_client_credential() -> None:
    out = upstream_request_headers(CLIENT, api_key="azure-key", client_ip=None, scheme="https")
    assert out.getall("api-key") == ["azure-key"]
    assert "Authorization" not in out


def test_forwarded_for_is_appended() -> None:
    out = upstream_request_headers(h(("X-Forwarded-For", "1.2.3.4")), api_key=None,
                                   client_ip="10.0.0.5", scheme="http")
    assert out["X-Forwarded-For"] == "1.2.3.4, 10.0.0.5"


def test_stream_response_headers_disable_downstream_buffering() -> None:
    upstream = h(("Content-Type", "text/event-stream; charset=utf-8"),
                 ("Transfer-Encoding", "chunked"), ("apim-request-id", "abc"),
                 ("x-ratelimit-remaining-tokens", "99"), ("Cache-Control", "private"))
    out = client_response_headers(upstream, stream=True)
    assert "Transfer-Encoding" not in out
    assert out["X-Accel-Buffering"] == "no"
    assert out["Cache-Control"] == "no-cache"
    assert out["apim-request-id"] == "abc"
    assert out["x-ratelimit-remaining-tokens"] == "99"


def test_non_stream_response_headers_unchanged_but_hop_by_hop() -> None:
    upstream = h(("Content-Type", "application/json"), ("Content-Length", "27"),
                 ("Content-Encoding", "gzip"), ("Connection", "close"))
    out = client_response_headers(upstream, stream=False)
    assert dict(out) == {"Content-Type": "application/json", "Content-Length": "27",
                         "Content-Encoding": "gzip"}


def test_event_stream_detection() -> None:
    assert is_event_stream(h(("Content-Type", "Text/Event-Stream; charset=utf-8")))
    assert not is_event_stream(h(("Content-Type", "application/json")))
    assert not is_event_stream(h())


def test_credential_prefers_api_key_then_bearer() -> None:
    assert credential(CLIENT) == "client-key"
    assert credential(h(("Authorization", "Bearer tok"))) == "tok"
    assert credential(h(("Authorization", "Basic abc"))) is None
    assert credential_digest(h(("api-key", "k"))) == hashlib.sha256(b"k").hexdigest()
    assert credential_digest(h()) is None
