"""One simulated Azure resource: its quotas, the headers it sends, and how it sends whole bodies."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from .capacity import Capacity, quota_exceeded
from .config import SimulatorConfig
from .hooks import EventGate, SimulatorStats
from .wire import compact

_HSTS: Final = "max-age=31536000; includeSubDomains; preload"
_REGION: Final = "East US"
_LIMIT_REQUESTS: Final = 300
_LIMIT_TOKENS: Final = 30000
_QUOTA_WINDOW_S: Final = 60.0


@dataclass
class _Quota:
    window_start: float
    requests: int = 0
    tokens: int = 0


class Resource:
    """Everything one simulated Azure resource knows across requests."""

    def __init__(self, config: SimulatorConfig, gate: EventGate | None) -> None:
        self.config = config
        self.gate = gate
        self.stats = SimulatorStats()
        self.fingerprint = "fp_" + hashlib.sha256(config.model.encode()).hexdigest()[:10]
        self.model_session = f"d{random.randint(100, 999)}-{time.strftime('%Y%m%d%H%M%S')}"
        self._quotas: dict[str, _Quota] = {}
        self.capacity = (Capacity(config.rpm, config.tpm)
                         if config.rpm is not None or config.tpm is not None else None)

    def _consume(self, deployment: str, tokens: int) -> tuple[int, int]:
        """Count a request against a per-minute quota so remaining-* headers move plausibly."""
        now = time.monotonic()
        quota = self._quotas.get(deployment)
        if quota is None or now - quota.window_start >= _QUOTA_WINDOW_S:
            quota = self._quotas[deployment] = _Quota(now)
        quota.requests += 1
        quota.tokens += tokens
        return max(_LIMIT_REQUESTS - quota.requests, 0), max(_LIMIT_TOKENS - quota.tokens, 0)

    def headers(
        self,
        deployment: str | None,
        *,
        success: bool,
        tokens: int = 0,
        tokens_left: int | None = None,
    ) -> dict[str, str]:
        """The headers of section 5: some on every answer, some only once a deployment is
        known, some only on success."""
        headers = {
            "apim-request-id": str(uuid.uuid4()),
            "Strict-Transport-Security": _HSTS,
            "x-content-type-options": "nosniff",
        }
        if deployment is not None and self.capacity is not None:
            headers |= self._enforce(deployment, success=success, tokens=tokens)
        elif deployment is not None:
            requests_left, quota_tokens_left = self._consume(deployment, tokens)
            headers |= {
                "x-ms-deployment-name": deployment,
                "x-ms-region": _REGION,
                "x-ms-rai-invoked": "true",
                "x-ratelimit-limit-requests": str(_LIMIT_REQUESTS),
                "x-ratelimit-limit-tokens": str(_LIMIT_TOKENS),
                "x-ratelimit-remaining-requests": str(requests_left),
                "x-ratelimit-remaining-tokens": str(
                    quota_tokens_left if tokens_left is None else tokens_left
                ),
            }
        if success:
            headers |= {
                "x-request-id": str(uuid.uuid4()),
                "azureml-model-session": self.model_session,
                "x-accel-buffering": "no",
            }
        return headers

    def _enforce(self, deployment: str, *, success: bool, tokens: int) -> dict[str, str]:
        """With a configured capacity, a successful answer first has to fit in it."""
        assert self.capacity is not None
        if success:
            admission = self.capacity.take(tokens)
            if not admission.allowed:
                raise quota_exceeded(deployment, admission)
            left = admission.requests_left, admission.tokens_left
        else:
            left = self.capacity.left()
        headers = {"x-ms-deployment-name": deployment, "x-ms-region": _REGION,
                   "x-ms-rai-invoked": "true"}
        for resource, limit, remaining in (("requests", self.capacity.rpm, left[0]),
                                           ("tokens", self.capacity.tpm, left[1])):
            if limit is not None:
                headers[f"x-ratelimit-limit-{resource}"] = str(limit)
                headers[f"x-ratelimit-remaining-{resource}"] = str(remaining)
        return headers

    async def respond(
        self, body: Any, headers: Mapping[str, str], delay: float = 0.0
    ) -> web.Response:
        """A non-streaming answer waits for the whole generation, and for the gate."""
        if delay > 0:
            await asyncio.sleep(delay)
        if self.gate is not None:
            await self.gate.wait()
        return json_response(200, body, headers)


RESOURCE: Final = web.AppKey("simulator_resource", Resource)


def json_response(status: int, body: Any, headers: Mapping[str, str]) -> web.Response:
    data = compact(body).encode()
    if status == 200:
        data += b"\n"  # a real 200 body ends with a newline; error bodies do not
    return web.Response(status=status, body=data, headers=headers, content_type="application/json")
