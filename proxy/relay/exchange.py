"""The per-request record carried through one request, from arrival to the last byte sent.

Forwarding fills in what happened on the wire, the observer what the response meant; the
metrics and the access log read the finished record. Times are `time.perf_counter()` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.observe.semantics import Observation
from proxy.relay.operation import Operation
from proxy.vocabulary import OTHER_DEPLOYMENT, UNKNOWN_CLIENT


@dataclass(slots=True)
class Exchange:
    started: float
    """When the request arrived."""
    wall_time: float
    """`time.time()` at arrival, for the access log."""
    method: str
    path: str
    """Request path without its query string."""
    operation: Operation = "other"
    """What the path addresses (`proxy.relay.operation`): a bounded label value."""
    api_version: str | None = None
    deployment: str = OTHER_DEPLOYMENT
    """Bounded label value: a configured deployment name, else `other`."""
    deployment_name: str | None = None
    """The deployment the request named (unbounded: never a label)."""
    client: str = UNKNOWN_CLIENT
    """Bounded label value: a configured client name, else `unknown`."""
    stream: bool = False
    """The client asked for a stream or the upstream answered with one."""
    status: int = 0
    """Status sent to the client (the upstream's, or the proxy's own on failure)."""
    first_byte_at: float | None = None
    """When the first response body byte was written to the client."""
    ended_at: float | None = None
    error_type: str | None = None
    """`connect`, `timeout`, `reset` or `protocol` when talking to the upstream failed."""
    client_disconnected: bool = False
    upstream_request_id: str | None = None
    retry_after: float | None = None
    """Seconds the upstream asked the client to wait (from a 429)."""
    ratelimit_remaining: dict[str, int] = field(default_factory=dict)
    """`requests` / `tokens` -> last `x-ratelimit-remaining-*` value on the response."""
    usage_injected: bool = False
    """The proxy added `stream_options.include_usage` to get exact token counts."""
    observation: Observation | None = None
    in_flight: bool = False
    """Counted in the in-flight gauge under `deployment` (which must not change after)."""
    upstream: str | None = None
    """The configured upstream whose answer the client got (None: the proxy answered)."""
    attempts: list[tuple[str, str]] = field(default_factory=list)
    """(upstream, status code or error type) of every upstream attempt, in order."""
    failovers: list[tuple[str, str]] = field(default_factory=list)
    """(upstream given up on, reason) for every attempt that was passed over for another."""
    attempt_started: float | None = None
    """When the attempt that served the client was sent (per-upstream latency starts here)."""
    spillover: bool = False
    """The answer carried `x-ms-spillover-from-deployment` (Azure's own PTU spillover)."""
    cooling_wait: float | None = None
    """Set when every candidate was cooling down and the proxy answered 429 itself."""
