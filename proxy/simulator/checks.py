"""The checks every endpoint makes before it does its own work, in the order Azure makes them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import hdrs, web

from .config import SimulatorConfig
from .errors import (
    backend_failed,
    deployment_not_found,
    invalid,
    missing_api_version,
    prompt_filtered,
    rate_limited,
    unauthorized,
)
from .options import Options, parse_options, require_scenario
from .resource import RESOURCE, Resource

_DEFAULT_RETRY_AFTER_S: Final = 6.0


@dataclass(frozen=True)
class Call:
    """A request that passed the common checks, with what they found out."""

    resource: Resource
    options: Options
    classic: bool
    """True on ``/openai/deployments/{deployment}/...`` paths, False on ``/openai/v1/...``."""
    api_version: str | None
    body: dict[str, Any]
    deployment: str


def admit(
    request: web.Request, scenarios: frozenset[str], endpoint: str
) -> tuple[Resource, Options]:
    """The header and credential checks, which every endpoint makes first."""
    resource = request.app[RESOURCE]
    options = parse_options(request.headers.get("x-simulator"))
    require_scenario(options, scenarios, endpoint)
    _check_auth(request, resource.config)
    return resource, options


async def accept(
    request: web.Request, scenarios: frozenset[str], endpoint: str, operation: str
) -> Call:
    """Every check up to where the model would see the request; ``operation`` names it in a 429."""
    resource, options = admit(request, scenarios, endpoint)
    classic = "deployment" in request.match_info
    api_version = request.query.get("api-version")
    if classic and not api_version:
        raise missing_api_version()
    body = await _json_body(request)
    deployment = _deployment(request, body, resource.config)
    _raise_for_infrastructure(options, deployment, operation, api_version)
    return Call(resource, options, classic, api_version, body, deployment)


def _raise_for_infrastructure(
    options: Options, deployment: str, operation: str, api_version: str | None
) -> None:
    """The scenarios that fail before the model sees the request."""
    if options.scenario == "rate_limit":
        wait = _DEFAULT_RETRY_AFTER_S if options.retry_after_s is None else options.retry_after_s
        raise rate_limited(deployment, operation, api_version, wait)
    if options.scenario == "server_error":
        raise backend_failed(deployment)


def check_prompt_filter(call: Call) -> None:
    """The input filter runs once the body is known to be valid."""
    if call.options.scenario == "prompt_filter":
        raise prompt_filtered(call.deployment, call.options.category or "self_harm")


def optional_int(body: dict[str, Any], key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid(f"{value!r} is not an integer of at least {minimum} - '{key}'", key)
    return value


def _check_auth(request: web.Request, config: SimulatorConfig) -> None:
    if not config.api_keys and not config.bearer_tokens:
        return
    api_key = request.headers.get("api-key")
    authorization = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, token = authorization.partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else None
    # openai-python < 2.34 sends the key both ways at once; one good credential is enough.
    if api_key is not None and api_key in config.api_keys:
        return
    if bearer is not None and (bearer in config.api_keys or bearer in config.bearer_tokens):
        return
    raise unauthorized(token_only=api_key is None and bearer is not None)


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise invalid(f"{raw[:80]!r} is not of type 'object'")
    return body


def _deployment(request: web.Request, body: dict[str, Any], config: SimulatorConfig) -> str:
    """The deployment from the classic path, or from body ``model`` on the v1 path."""
    name = request.match_info.get("deployment")
    if name is None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("you must provide a model parameter", "model")
        name = model
    if config.deployments and name not in config.deployments:
        raise deployment_not_found()
    return name
