"""Header rules for both directions: pure functions, no I/O.

What the app sent is what the upstream gets, minus the hop-by-hop headers (RFC 9110 7.6.1:
they describe one connection, not the message) and, when the proxy holds the Azure key itself,
minus the client's credentials.
"""

from __future__ import annotations

import hashlib
from typing import Final

from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        hdrs.CONNECTION, "Keep-Alive", hdrs.PROXY_AUTHENTICATE, hdrs.PROXY_AUTHORIZATION,
        hdrs.TE, hdrs.TRAILER, "Trailers", hdrs.TRANSFER_ENCODING, hdrs.UPGRADE,
        "Proxy-Connection",
    )
)
API_KEY = "api-key"
SSE_CONTENT_TYPE = "text/event-stream"


_HOST = hdrs.HOST.lower()
_CONTENT_LENGTH = hdrs.CONTENT_LENGTH.lower()
_CREDENTIALS = frozenset({API_KEY, hdrs.AUTHORIZATION.lower()})


# Every request and response picks one of these, so the sets are built once, not per message.
_REQUEST_SKIP: Final = {
    own_key: HOP_BY_HOP.union({_HOST, _CONTENT_LENGTH}, _CREDENTIALS if own_key else ())
    for own_key in (False, True)
}
_STREAM_RESPONSE_SKIP: Final = HOP_BY_HOP | {_CONTENT_LENGTH}


def _connection_tokens(headers: CIMultiDictProxy[str]) -> set[str]:
    """Headers named in `Connection` are hop-by-hop for this message too."""
    tokens: set[str] = set()
    for value in headers.getall(hdrs.CONNECTION, ()):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _end_to_end(headers: CIMultiDictProxy[str], skip: frozenset[str]) -> CIMultiDict[str]:
    # A copy minus the few names present: multidict does both in C, where filtering every
    # header in Python cost 3-4x as much per message.
    out = CIMultiDict(headers)
    for name in skip:
        if name in out:
            del out[name]
    if hdrs.CONNECTION in headers:
        for name in _connection_tokens(headers):
            out.popall(name, None)
    return out


def upstream_request_headers(
    incoming: CIMultiDictProxy[str],
    *,
    api_key: str | None,
    client_ip: str | None,
    scheme: str,
) -> CIMultiDict[str]:
    """Headers to send upstream for a client's request.

    `Host` and `Content-Length` are dropped so the client library sets the upstream's host and
    the length of the body actually sent (the proxy may have added the usage option to it).
    """
    headers = _end_to_end(incoming, _REQUEST_SKIP[api_key is not None])
    if api_key is not None:
        headers[API_KEY] = api_key
    if client_ip:
        prior = incoming.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    headers.setdefault("X-Forwarded-Proto", scheme)
    return headers


def client_response_headers(upstream: CIMultiDictProxy[str], *, stream: bool) -> CIMultiDict[str]:
    """Headers to send the client for the upstream's response.

    A stream's framing is chunked on our side whatever it was upstream, so its length headers
    go; the two buffering headers tell an nginx or ingress in front of us not to hold it either.
    """
    headers = _end_to_end(upstream, _STREAM_RESPONSE_SKIP if stream else HOP_BY_HOP)
    if stream:
        headers["X-Accel-Buffering"] = "no"
        headers[hdrs.CACHE_CONTROL] = "no-cache"
    return headers


def is_event_stream(headers: CIMultiDictProxy[str]) -> bool:
    content_type = headers.get(hdrs.CONTENT_TYPE, "")
    return content_type.split(";", 1)[0].strip().lower() == SSE_CONTENT_TYPE


def credential(headers: CIMultiDictProxy[str]) -> str | None:
    """The caller's secret: `api-key`, else an `Authorization: Bearer` token."""
    key = headers.get(API_KEY)
    if key:
        return key
    auth = headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def credential_digest(headers: CIMultiDictProxy[str]) -> str | None:
    """sha256 hex of the caller's secret, the only form in which the proxy compares it."""
    secret = credential(headers)
    return hashlib.sha256(secret.encode()).hexdigest() if secret else None
