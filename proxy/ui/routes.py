"""Serves the built-in page: `/`, its files under `/_proxy/ui/`, and what it needs to know.

The files are read once from the package (`importlib.resources`, so an installed wheel or a
zipped package works too) and served from memory: a fixed set of names, so no request path
ever reaches the file system. The prefix keeps clear of every Azure path (`/openai/...`), and
any method but GET/HEAD on `/` still falls through to the catch-all route and is forwarded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Final

from aiohttp import hdrs, web

from proxy.config import Config

PREFIX: Final = "/_proxy/ui"
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page talks to this proxy and nothing else; the browser enforces it.
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of `proxy/ui/static`, by name."""
    assets: dict[str, Asset] = {}
    for entry in resources.files(__package__).joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if not entry.is_file() or suffix not in _TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[entry.name] = Asset(body, _TYPES[suffix], etag)
    return assets


def page_info(config: Config) -> dict[str, object]:
    """What the page shows in its pickers: the configured deployments, and which of them only
    the built-in simulator serves (the page then sends the simulator's controls)."""
    real = {d for u in config.upstreams if not u.is_simulator for d in u.deployments}
    return {"deployments": [{"name": d, "simulated": d not in real}
                            for d in config.deployments]}


def add_ui_routes(app: web.Application, config: Config) -> None:
    """Register the page's routes; call before the catch-all route."""
    assets = load_assets()
    info = json.dumps(page_info(config)).encode()

    def serve(asset: Asset) -> web.Response:
        return web.Response(body=asset.body, content_type=None, headers={
            hdrs.CONTENT_TYPE: asset.content_type, hdrs.ETAG: asset.etag,
            hdrs.CACHE_CONTROL: "no-cache", **_SECURITY_HEADERS})

    async def index(request: web.Request) -> web.Response:
        return _conditional(request, serve(assets["index.html"]))

    async def asset(request: web.Request) -> web.StreamResponse:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="not found")
        return _conditional(request, serve(found))

    async def deployments(request: web.Request) -> web.Response:
        return web.Response(body=info, content_type="application/json",
                            headers={hdrs.CACHE_CONTROL: "no-store"})

    app.router.add_get("/", index)
    app.router.add_get(f"{PREFIX}/info.json", deployments)
    app.router.add_get(PREFIX + "/{name:[A-Za-z0-9_-]+\\.[a-z]+}", asset)


def _conditional(request: web.Request, response: web.Response) -> web.Response:
    if request.headers.get(hdrs.IF_NONE_MATCH) == response.headers[hdrs.ETAG]:
        return web.Response(status=304, headers={hdrs.ETAG: response.headers[hdrs.ETAG]})
    return response
