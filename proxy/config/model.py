"""The parsed configuration: frozen dataclasses, and the error that lists every problem."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.routing.settings import FailoverConfig, SimulatorCapacity

SIMULATOR_ENDPOINT = "simulator"
"""The endpoint value that starts the built-in simulated upstream inside the proxy process."""


class ConfigError(Exception):
    """Every problem found in one config file; `str()` lists them one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class UpstreamConfig:
    name: str
    endpoint: str
    """`scheme://host[:port]` of the Azure resource, or `simulator` for the built-in one."""
    api_key: str | None = field(default=None, repr=False)
    """When set, sent upstream as `api-key` instead of the client's credentials."""
    deployments: tuple[str, ...] = ()
    """The deployment names clients use (the `deployment` label values)."""
    priority: int = 0
    """Lower is tried first among the upstreams that list a deployment."""
    weight: float = 1.0
    """Share of requests among upstreams of the same priority."""
    aliases: tuple[tuple[str, str], ...] = ()
    """(client-facing name, this resource's deployment name) where the two differ."""
    simulator: SimulatorCapacity | None = None
    """Quota of the built-in simulator (only with `endpoint: simulator`)."""

    @property
    def is_simulator(self) -> bool:
        return self.endpoint == SIMULATOR_ENDPOINT

    def deployment_for(self, name: str) -> str:
        """What this resource calls the deployment clients call `name`."""
        for alias, target in self.aliases:
            if alias == name:
                return target
        return name


@dataclass(frozen=True)
class ClientConfig:
    """A known calling application, recognised by the sha256 of its api key or bearer token."""

    name: str
    key_sha256: str = field(repr=False)


@dataclass(frozen=True)
class TimeoutsConfig:
    connect: float = 10.0
    """Seconds to open a connection to the upstream."""
    response: float = 600.0
    """Seconds from sending the request until the upstream's response headers arrive (at most
    `idle`: waiting for the headers is silence from the upstream too)."""
    idle: float = 300.0
    """Longest silence from the upstream while a response body is being read (reasoning models
    think for minutes before their first token, hence the generous default)."""
    client: float = 60.0
    """Seconds a client has to send a complete request's headers (from connection open or the
    previous response, so also how long an idle keep-alive connection stays) and, separately,
    its body. Bounds slowloris-style clients."""


@dataclass(frozen=True)
class LimitsConfig:
    max_request_body_bytes: int = 64 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    """An SSE event larger than this is not parsed by the observer (it is still forwarded)."""


@dataclass(frozen=True)
class MetricsConfig:
    path: str = "/metrics"
    bearer_token: str | None = field(default=None, repr=False)
    """When set, `/metrics` answers 401 unless sent `Authorization: Bearer <token>`."""


@dataclass(frozen=True)
class ShutdownConfig:
    grace: float = 5.0
    """Seconds `/readyz` answers 503 while the proxy still serves, so load balancers stop
    sending new requests before the listener closes."""
    drain_timeout: float = 30.0
    """Seconds in-flight requests get to finish once the listener closed; then they are cut."""


@dataclass(frozen=True)
class CorsConfig:
    """Which browser origins may call the proxy (see `proxy/relay/cors.py` for the rules)."""

    allow_origins: tuple[str, ...] = ()
    """`scheme://host[:port]` origins, or `*` for any. Empty: CORS handling is off."""
    allow_headers: tuple[str, ...] = ()
    """Request headers a page may send, in addition to the built-in ones (lower case)."""
    max_age: int = 600
    """Seconds a browser may cache a preflight's answer."""

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)


@dataclass(frozen=True)
class Config:
    upstreams: tuple[UpstreamConfig, ...]
    listen: ListenConfig = ListenConfig()
    clients: tuple[ClientConfig, ...] = ()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    limits: LimitsConfig = LimitsConfig()
    metrics: MetricsConfig = MetricsConfig()
    admin: ListenConfig | None = None
    """Where `/metrics`, `/healthz` and `/readyz` are served; None = on the proxy's own port."""
    shutdown: ShutdownConfig = ShutdownConfig()
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    require_client_auth: bool = False
    """Answer 401 to requests whose key matches no configured client."""
    inject_stream_usage: bool = True
    access_log: bool = True
    cors: CorsConfig = CorsConfig()
    ui: bool = True
    """Serve the built-in page at `/` (and its files under `/_proxy/ui/`)."""
    source: str = "<config>"

    @property
    def deployments(self) -> tuple[str, ...]:
        """Every configured deployment name, in order, without repeats."""
        return tuple(dict.fromkeys(d for u in self.upstreams for d in u.deployments))
