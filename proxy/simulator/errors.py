"""Azure-shaped error answers: raised anywhere in a handler, rendered by one middleware."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from .wire import PROMPT_CATEGORIES, filter_results

_PROMPT_FILTER_MESSAGE: Final = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
_KEY_DENIED: Final = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
_TOKEN_DENIED: Final = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect "
    "(https://cognitiveservices.azure.com), or have expired."
)
_DEPLOYMENT_NOT_FOUND: Final = (
    "The API deployment for this resource does not exist. If you created the deployment "
    "within the last 5 minutes, please wait a moment and try again."
)

SERVER_ERROR: Final[dict[str, Any]] = {
    "message": "The server had an error processing your request.",
    "type": "server_error",
    "param": None,
    "code": None,
}
"""The model failing mid-generation: an SSE error event, or a 500 body when not streaming."""


class Rejection(Exception):
    """An error answer; ``deployment`` set means the deployment's headers go with it."""

    def __init__(
        self,
        status: int,
        error: dict[str, Any],
        *,
        deployment: str | None = None,
        headers: Mapping[str, str] | None = None,
        tokens_left: int | None = None,
    ) -> None:
        super().__init__(status, error)
        self.status = status
        self.body = {"error": error}
        self.deployment = deployment
        self.headers = dict(headers or {})
        self.tokens_left = tokens_left


def invalid(message: str, param: str | None = None) -> Rejection:
    """OpenAI-style request validation error, as Azure returns for malformed bodies."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return Rejection(400, error)


def bad_control(key: str, reason: str) -> Rejection:
    """A bad ``x-simulator`` key; shaped like Azure's validation errors so clients parse it."""
    error = {
        "message": f"x-simulator: {key}: {reason}",
        "type": "invalid_request_error",
        "param": f"x-simulator.{key}",
        "code": "invalid_simulator_control",
    }
    return Rejection(400, error)


def unauthorized(*, token_only: bool) -> Rejection:
    """Azure words the 401 for an Entra token differently from the one for a key."""
    return Rejection(401, {"code": "401", "message": _TOKEN_DENIED if token_only else _KEY_DENIED})


def missing_api_version() -> Rejection:
    message = "Missing required query parameter: api-version"
    return Rejection(400, {"code": "BadRequest", "message": message})


def deployment_not_found() -> Rejection:
    return Rejection(404, {"code": "DeploymentNotFound", "message": _DEPLOYMENT_NOT_FOUND})


def resource_not_found() -> Rejection:
    return Rejection(404, {"code": "404", "message": "Resource not found"})


def rate_limited(
    deployment: str, operation: str, api_version: str | None, wait: float
) -> Rejection:
    seconds = math.ceil(wait)
    message = (
        f"Requests to the {operation} Operation under Azure OpenAI API version "
        f"{api_version or 'v1'} have exceeded token rate limit of your current OpenAI S0 "
        f"pricing tier. Please retry after {seconds} seconds. Please go here: "
        "https://aka.ms/oai/quotaincrease if you would like to further increase the "
        "default rate limit."
    )
    retry = {"retry-after": str(seconds), "retry-after-ms": str(round(wait * 1000))}
    error = {"code": "429", "message": message}
    return Rejection(429, error, deployment=deployment, headers=retry, tokens_left=0)


def backend_failed(deployment: str) -> Rejection:
    """The gateway's 500, before the model sees the request."""
    message = "Backend returned unexpected response. Please contact Microsoft for help."
    error = {"code": "InternalServerError", "message": message}
    return Rejection(500, error, deployment=deployment)


def generation_failed(deployment: str) -> Rejection:
    """The model's own failure, when there is no stream to report it in."""
    return Rejection(500, dict(SERVER_ERROR), deployment=deployment)


def prompt_filtered(deployment: str, category: str) -> Rejection:
    error = {
        "message": _PROMPT_FILTER_MESSAGE,
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": filter_results(PROMPT_CATEGORIES, category),
        },
    }
    return Rejection(400, error, deployment=deployment)
