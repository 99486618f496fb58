"""One JSON line per request on stdout: what a person debugging a request wants in one place.

Only the `api-version` query parameter is logged (a query string can carry secrets), and no
header value at all.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from proxy.relay.exchange import Exchange
from proxy.telemetry.metrics import Metrics

LOGGER_NAME = "aoai_stream_proxy.access"


def access_logger(enabled: bool) -> logging.Logger | None:
    if not enabled:
        return None
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def _ms(start: float, end: float | None) -> float | None:
    return None if end is None else round((end - start) * 1000, 3)


def access_record(ex: Exchange) -> dict[str, Any]:
    obs = ex.observation
    usage = obs.usage if obs is not None else None
    return {
        "time": datetime.fromtimestamp(ex.wall_time, UTC).isoformat(
            timespec="milliseconds"),
        "method": ex.method,
        "path": ex.path[:512],
        "api_version": ex.api_version[:64] if ex.api_version else None,
        "deployment": ex.deployment,
        "requested_deployment": ex.deployment_name[:128] if ex.deployment_name else None,
        "client": ex.client,
        "status": ex.status,
        "stream": ex.stream,
        "ttfb_ms": _ms(ex.started, ex.first_byte_at),
        "ttft_ms": _ms(ex.started, obs.first_token_at if obs is not None else None),
        "duration_ms": _ms(ex.started, ex.ended_at),
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "estimated_completion_tokens":
            obs.output_deltas if obs is not None and usage is None and ex.stream else None,
        "finish_reasons": Metrics.finish_reason_labels(ex, obs) if obs is not None else [],
        "upstream_request_id": ex.upstream_request_id,
        "error_type": ex.error_type,
        "client_disconnected": ex.client_disconnected,
    }


def log_access(logger: logging.Logger | None, ex: Exchange) -> None:
    if logger is not None:
        logger.info(json.dumps(access_record(ex), separators=(",", ":")))
