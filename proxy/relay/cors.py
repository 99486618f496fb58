"""CORS for browser apps calling the proxy: preflights answered here, headers on every answer.

With `cors.allow_origins` configured:
- A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered by the
  proxy itself, before client authentication, and never forwarded or counted: the browser sends
  it without the app's key, so neither Azure nor the proxy's client check could answer it.
  Another origin's preflight gets a 403 without CORS headers, and the browser stops there.
- Every response to an allowed origin, streamed or not, forwarded or the proxy's own error,
  gets `Access-Control-Allow-Origin`, `Vary: Origin` and `Access-Control-Expose-Headers`. They
  are set when the response is prepared (`on_response_prepare`), from the request's headers
  alone, so they never depend on anything in the body.
- The upstream's own `Access-Control-*` headers are always removed: two
  `Access-Control-Allow-Origin` headers make a browser reject the response. Every response
  gets `Vary: Origin`, whatever the origin, as its headers depend on it.

With no origins configured nothing here is installed and responses pass as they always did.
"""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from proxy.config import CorsConfig
from proxy.relay.errors import azure_error

ALLOW_METHODS: Final = "GET, POST, PUT, PATCH, DELETE"
DEFAULT_HEADERS: Final = frozenset({"api-key", "authorization", "content-type"})
HEADER_PREFIXES: Final = ("x-stainless-", "x-ms-")
"""openai-python and openai-node send `x-stainless-*`; Azure SDKs send `x-ms-*`."""

EXPOSED: Final = (
    "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
    "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens",
    "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
    "retry-after", "retry-after-ms", "apim-request-id", "x-request-id",
    "x-aoai-proxy-upstream", "x-aoai-proxy-attempts",
)
"""Response headers a page may read, named one by one: a `*` there is not honoured for
credentialed requests nor by every browser in use."""
_EXPOSE_VALUE: Final = ", ".join(EXPOSED)

_PREFIX: Final = "access-control-"


class CorsPolicy:
    """Decisions from the configuration alone: which origin, which requested headers."""

    def __init__(self, config: CorsConfig) -> None:
        self.any_origin = "*" in config.allow_origins
        self.origins = frozenset(config.allow_origins)
        self.headers = DEFAULT_HEADERS | frozenset(config.allow_headers)
        self.max_age = str(config.max_age)

    def allows(self, origin: str | None) -> bool:
        if not origin:
            return False
        return self.any_origin or origin.lower() in self.origins

    def allowed_headers(self, requested: str) -> list[str]:
        """The requested headers this policy allows, in the browser's order."""
        names = (n.strip().lower() for n in requested.split(","))
        return [n for n in names if n and (n in self.headers or n.startswith(HEADER_PREFIXES))]


def is_preflight(request: web.BaseRequest) -> bool:
    return (request.method == hdrs.METH_OPTIONS and hdrs.ORIGIN in request.headers
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers)


def preflight_response(policy: CorsPolicy, request: web.BaseRequest) -> web.Response:
    origin = request.headers[hdrs.ORIGIN]
    if not policy.allows(origin):
        # No CORS headers: the browser refuses the real request, which is never sent.
        return azure_error(403, "OriginNotAllowed", "This origin is not in the proxy's "
                           "cors.allow_origins.")
    response = web.Response(status=204)
    headers = response.headers
    headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ALLOW_METHODS
    allowed = policy.allowed_headers(request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, ""))
    if allowed:
        headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(allowed)
    headers[hdrs.ACCESS_CONTROL_MAX_AGE] = policy.max_age
    return response


def apply(policy: CorsPolicy, origin: str | None, headers: CIMultiDict[str], *,
          own_preflight: bool = False) -> None:
    """Make `headers` (a response's, before it is sent) carry exactly the proxy's CORS.

    Everything but the proxy's own preflight answer may come from the upstream, so any
    `Access-Control-*` header in it is dropped first."""
    if not own_preflight:
        for name in {k for k in headers if k.lower().startswith(_PREFIX)}:
            headers.popall(name, None)
    _add_vary_origin(headers)
    if origin and policy.allows(origin):
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = _EXPOSE_VALUE


def _add_vary_origin(headers: CIMultiDict[str]) -> None:
    """Whatever the origin, the answer depends on it: caches must key on it too."""
    values = headers.getall(hdrs.VARY, [])
    tokens = {t.strip().lower() for v in values for t in v.split(",")}
    if "origin" in tokens or "*" in tokens:
        return
    if values:
        headers[hdrs.VARY] = ", ".join([*values, "Origin"])
    else:
        headers[hdrs.VARY] = "Origin"


def install(app: web.Application, config: CorsConfig) -> None:
    """Answer preflights and set CORS headers on `app`'s responses (nothing when off)."""
    if not config.enabled:
        return
    policy = CorsPolicy(config)

    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_preflight(request):
            return preflight_response(policy, request)
        return await handler(request)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        apply(policy, request.headers.get(hdrs.ORIGIN), response.headers,
              own_preflight=is_preflight(request))

    # Outermost: a preflight is answered before anything else looks at the request.
    app.middlewares.insert(0, preflight)
    app.on_response_prepare.append(on_prepare)

