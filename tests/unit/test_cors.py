"""CORS rules as pure functions: which origins, which requested headers, which headers out."""

from __future__ import annotations

from multidict import CIMultiDict

from proxy.config import CorsConfig
from proxy.relay.cors import EXPOSED, CorsPolicy, apply

APP = "https://app.example.com"


def policy(*origins: str, headers: tuple[str, ...] = ()) -> CorsPolicy:
    return CorsPolicy(CorsConfig(allow_origins=origins, allow_headers=headers, max_age=600))


def test_only_listed_origins_are_allowed_and_star_allows_any() -> None:
    listed = policy(APP)
    assert listed.allows(APP) and listed.allows("HTTPS://APP.EXAMPLE.COM")
    assert not listed.allows("https://app.example.com:8443")
    assert not listed.allows("http://app.example.com")
    assert not listed.allows("https://evil.example.com") and not listed.allows(None)
    assert not listed.allows("")
    anyone = policy("*")
    assert anyone.allows("http://127.0.0.1:5173") and anyone.allows("null")


def test_requested_headers_are_echoed_only_when_allowed() -> None:
    rules = policy(APP, headers=("x-app-trace",))
    requested = ("content-type, API-Key,authorization, x-stainless-os, X-Ms-Client-Request-Id, "
                 "x-app-trace, x-evil, cookie, , x-stainless")
    assert rules.allowed_headers(requested) == [
        "content-type", "api-key", "authorization", "x-stainless-os",
        "x-ms-client-request-id", "x-app-trace"]
    assert rules.allowed_headers("") == []


def test_allowed_origin_gets_its_origin_echoed_vary_and_every_exposed_header() -> None:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "text/event-stream"})
    apply(policy("*"), APP, headers)
    assert headers.getall("Access-Control-Allow-Origin") == [APP]  # echoed, never "*"
    assert headers["Vary"] == "Origin"
    exposed = [h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")]
    assert exposed == list(EXPOSED) and "*" not in exposed
    for name in ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "retry-after",
                 "retry-after-ms", "apim-request-id", "x-request-id", "x-aoai-proxy-upstream",
                 "x-aoai-proxy-attempts"):
        assert name in exposed


def test_upstream_cors_headers_are_always_removed_never_duplicated() -> None:
    upstream = [("Access-Control-Allow-Origin", "*"), ("access-control-allow-origin", "x"),
                ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Expose-Headers", "*"), ("Vary", "Accept-Encoding"),
                ("apim-request-id", "abc")]
    allowed: CIMultiDict[str] = CIMultiDict(upstream)
    apply(policy(APP), APP, allowed)
    assert allowed.getall("Access-Control-Allow-Origin") == [APP]
    assert "Access-Control-Allow-Credentials" not in allowed
    assert allowed.getall("Vary") == ["Accept-Encoding, Origin"]
    assert allowed["apim-request-id"] == "abc"

    refused: CIMultiDict[str] = CIMultiDict(upstream)
    apply(policy(APP), "https://evil.example.com", refused)
    assert not [k for k in refused if k.lower().startswith("access-control-")]
    assert refused.getall("Vary") == ["Accept-Encoding, Origin"]

    no_origin: CIMultiDict[str] = CIMultiDict(upstream)
    apply(policy(APP), None, no_origin)
    assert not [k for k in no_origin if k.lower().startswith("access-control-")]


def test_vary_origin_is_not_added_twice() -> None:
    for vary in ("Origin", "accept-encoding, origin", "*"):
        headers: CIMultiDict[str] = CIMultiDict({"Vary": vary})
        apply(policy(APP), APP, headers)
        assert headers.getall("Vary") == [vary]
