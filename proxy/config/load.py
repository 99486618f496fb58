"""Configuration: YAML -> frozen dataclasses, validated once.

`load_config(path, environ)` reads the file, substitutes `${VAR}` / `${VAR:-default}` from the
given environment (never from `os.environ` directly, so tests stay hermetic) and checks every key.
All problems are collected and raised together in one `ConfigError`, each naming the file and
the key, so a user fixes a broken file in one pass instead of one error per restart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from proxy.routing import settings as routing
from proxy.routing.settings import FailoverConfig, SimulatorCapacity

__all__ = ["SIMULATOR_ENDPOINT", "ClientConfig", "Config", "ConfigError", "FailoverConfig",
           "LimitsConfig", "ListenConfig", "MetricsConfig", "ShutdownConfig",
           "SimulatorCapacity", "TimeoutsConfig", "UpstreamConfig", "load_config",
           "parse_config"]

SIMULATOR_ENDPOINT = "simulator"
"""The endpoint value that starts the built-in simulated upstream inside the proxy process."""

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
    """Seconds from sending the request until the upstream's response headers arrive."""
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


def load_config(path: str | Path, environ: Mapping[str, str]) -> Config:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read file: {exc.strerror or exc}"]) from None
    return parse_config(text, environ, source=source)


def parse_config(text: str, environ: Mapping[str, str], *, source: str = "<config>") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: not valid YAML: {_yaml_problem(exc)}"]) from None
    reader = _Reader(source, environ)
    config = reader.config(raw if raw is not None else {})
    if reader.problems or config is None:
        raise ConfigError(reader.problems)
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, without PyYAML's snippet of the line (it may hold a literal key)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


T = TypeVar("T")


class _Reader:
    """Walks the parsed YAML, converting values and recording problems instead of stopping."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.source}: {key}: {message}")

    def config(self, raw: Any) -> Config | None:
        section = self.mapping("(top level)", raw, _TOP_KEYS)
        if section is None:
            return None
        upstreams = self.upstreams(section.get("upstreams"))
        clients = self.clients(section.get("clients", []))
        require_auth = self.scalar("require_client_auth",
                                   section.get("require_client_auth", False), _to_bool)
        if require_auth:
            self.check_auth(upstreams, clients, bool(section.get("clients")))
        return Config(
            upstreams=upstreams,
            listen=self.listen(section.get("listen", {})),
            clients=clients,
            timeouts=self.timeouts(section.get("timeouts", {})),
            limits=self.limits(section.get("limits", {})),
            metrics=self.metrics(section.get("metrics", {})),
            admin=self.listen(section["admin"], key="admin") if "admin" in section else None,
            shutdown=self.shutdown(section.get("shutdown", {})),
            failover=routing.failover(self, section.get("failover", {})),
            require_client_auth=bool(require_auth),
            inject_stream_usage=self.scalar(
                "inject_stream_usage", section.get("inject_stream_usage", True), _to_bool
            )
            or False,
            access_log=self.scalar("access_log", section.get("access_log", True), _to_bool)
            or False,
            cors=self.cors(section.get("cors", {})),
            ui=self.scalar("ui", section.get("ui", True), _to_bool) is not False,
            source=self.source,
        )

    def mapping(self, key: str, raw: Any, allowed: frozenset[str]) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.problem(key, f"expected a mapping, got {_kind(raw)}")
            return None
        for name in raw:
            if name not in allowed:
                hint = ", ".join(sorted(allowed))
                self.problem(f"{_join(key, name)}", f"unknown key (allowed here: {hint})")
        return raw

    def scalar(self, key: str, raw: Any, convert: Callable[[Any], T]) -> T | None:
        value = self.substitute(key, raw)
        if value is None and raw is not None:
            return None
        try:
            return convert(value)
        except (TypeError, ValueError) as exc:
            self.problem(key, str(exc))
            return None

    def substitute(self, key: str, raw: Any) -> Any:
        """Replace `${VAR}` / `${VAR:-default}` inside string values; others pass unchanged."""
        if not isinstance(raw, str):
            return raw
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = self.environ.get(name)
            # As in the shell: `${VAR:-default}` also replaces a variable that is set but empty.
            if value or (value is not None and default is None):
                return value
            if default is not None:
                return default
            missing.append(name)
            return ""

        value = _ENV_REF.sub(replace, raw)
        for name in missing:
            self.problem(key, f"environment variable {name} is not set (write ${{{name}:-}} "
                         "to make it optional)")
        return None if missing else value

    def listen(self, raw: Any, key: str = "listen") -> ListenConfig:
        section = self.mapping(key, raw, frozenset({"host", "port"}))
        if section is None:
            return ListenConfig()
        host = self.scalar(f"{key}.host", section.get("host", "127.0.0.1"), _to_text)
        port = self.scalar(f"{key}.port", section.get("port", 8080), _to_port)
        return ListenConfig(host=host or "127.0.0.1", port=8080 if port is None else port)

    def check_auth(self, upstreams: tuple[UpstreamConfig, ...],
                   clients: tuple[ClientConfig, ...], listed: bool) -> None:
        """Client auth only makes sense when the proxy, not the app, holds the Azure key."""
        if not listed:
            self.problem("require_client_auth", "needs at least one entry in `clients`")
        for i, upstream in enumerate(upstreams):
            if upstream.api_key is None and not upstream.is_simulator:
                self.problem(f"upstreams[{i}].api_key", "must be set when "
                             "require_client_auth is true (clients then hold proxy keys, "
                             "not Azure keys)")

    def shutdown(self, raw: Any) -> ShutdownConfig:
        section = self.mapping("shutdown", raw, frozenset({"grace", "drain_timeout"}))
        if section is None:
            return ShutdownConfig()
        default = ShutdownConfig()
        grace = self.scalar("shutdown.grace", section.get("grace", default.grace),
                            _to_non_negative_seconds)
        drain = self.scalar("shutdown.drain_timeout",
                            section.get("drain_timeout", default.drain_timeout), _to_seconds)
        return ShutdownConfig(grace=default.grace if grace is None else grace,
                              drain_timeout=drain or default.drain_timeout)

    def upstreams(self, raw: Any) -> tuple[UpstreamConfig, ...]:
        if raw is None:
            self.problem("upstreams", "missing: list at least one upstream with an endpoint")
            return ()
        if not isinstance(raw, list) or not raw:
            self.problem("upstreams", f"expected a non-empty list, got {_kind(raw)}")
            return ()
        result = [self.upstream(f"upstreams[{i}]", item) for i, item in enumerate(raw)]
        found = [u for u in result if u is not None]
        names = [u.name for u in found]
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.problem("upstreams", f"name {name!r} is used more than once")
        return tuple(found)

    def upstream(self, key: str, raw: Any) -> UpstreamConfig | None:
        section = self.mapping(key, raw, frozenset({"name", "endpoint", "api_key", "deployments"})
                               | routing.UPSTREAM_KEYS)
        if section is None:
            return None
        name = self.scalar(f"{key}.name", section.get("name", "primary"), _to_name)
        if "endpoint" not in section:
            self.problem(f"{key}.endpoint", "missing: the Azure resource URL "
                         "(https://NAME.openai.azure.com) or `simulator`")
            endpoint = None
        else:
            endpoint = self.scalar(f"{key}.endpoint", section["endpoint"], _to_endpoint)
        api_key = self.scalar(f"{key}.api_key", section.get("api_key"), _to_optional_text)
        deployments, aliases = routing.deployments(
            self, f"{key}.deployments", section.get("deployments", []), _to_name)
        capacity = routing.simulator_capacity(self, f"{key}.simulator", section.get("simulator"),
                                              endpoint == SIMULATOR_ENDPOINT)
        priority, weight = routing.priority(self, key, section), routing.weight(self, key, section)
        if name is None or endpoint is None:
            return None
        return UpstreamConfig(name=name, endpoint=endpoint, api_key=api_key or None,
                              deployments=deployments, aliases=aliases, priority=priority,
                              weight=weight, simulator=capacity)

    def clients(self, raw: Any) -> tuple[ClientConfig, ...]:
        if not isinstance(raw, list):
            self.problem("clients", f"expected a list, got {_kind(raw)}")
            return ()
        found = [self.client(f"clients[{i}]", item) for i, item in enumerate(raw)]
        return tuple(c for c in found if c is not None)

    def client(self, key: str, raw: Any) -> ClientConfig | None:
        section = self.mapping(key, raw, frozenset({"name", "key_sha256", "key"}))
        if section is None:
            return None
        name = self.scalar(f"{key}.name", section.get("name"), _to_name)
        if ("key" in section) == ("key_sha256" in section):
            self.problem(key, "give exactly one of `key` (e.g. ${APP_KEY}) or `key_sha256`")
            return None
        if "key" in section:
            plain = self.scalar(f"{key}.key", section["key"], _to_text)
            digest = hashlib.sha256(plain.encode()).hexdigest() if plain else None
            if plain == "":
                self.problem(f"{key}.key", "is empty")
        else:
            digest = self.scalar(f"{key}.key_sha256", section["key_sha256"], _to_sha256)
        if name is None or digest is None:
            return None
        return ClientConfig(name=name, key_sha256=digest)

    def timeouts(self, raw: Any) -> TimeoutsConfig:
        names = ("connect", "response", "idle", "client")
        section = self.mapping("timeouts", raw, frozenset(names))
        if section is None:
            return TimeoutsConfig()
        default = TimeoutsConfig()
        values = {
            name: self.scalar(f"timeouts.{name}", section.get(name, getattr(default, name)),
                              _to_seconds)
            for name in names
        }
        return TimeoutsConfig(**{k: v for k, v in values.items() if v is not None})

    def limits(self, raw: Any) -> LimitsConfig:
        names = ("max_request_body_bytes", "max_event_bytes")
        section = self.mapping("limits", raw, frozenset(names))
        if section is None:
            return LimitsConfig()
        default = LimitsConfig()
        values = {
            name: self.scalar(f"limits.{name}", section.get(name, getattr(default, name)),
                              _to_positive_int)
            for name in names
        }
        return LimitsConfig(**{k: v for k, v in values.items() if v is not None})

    def metrics(self, raw: Any) -> MetricsConfig:
        section = self.mapping("metrics", raw, frozenset({"path", "bearer_token"}))
        if section is None:
            return MetricsConfig()
        path = self.scalar("metrics.path", section.get("path", "/metrics"), _to_route)
        token = self.scalar("metrics.bearer_token", section.get("bearer_token"),
                            _to_optional_text)
        return MetricsConfig(path=path or "/metrics", bearer_token=token or None)


    def cors(self, raw: Any) -> CorsConfig:
        section = self.mapping("cors", raw, frozenset({"allow_origins", "allow_headers",
                                                       "max_age"}))
        if section is None:
            return CorsConfig()
        origins = self.texts("cors.allow_origins", section.get("allow_origins", []), _to_origin)
        headers = self.texts("cors.allow_headers", section.get("allow_headers", []),
                             _to_header_name)
        max_age = self.scalar("cors.max_age", section.get("max_age", 600), _to_max_age)
        return CorsConfig(allow_origins=origins, allow_headers=headers,
                          max_age=600 if max_age is None else max_age)

    def texts(self, key: str, raw: Any, convert: Callable[[Any], str]) -> tuple[str, ...]:
        if not isinstance(raw, list):
            self.problem(key, f"expected a list, got {_kind(raw)}")
            return ()
        values = [self.scalar(f"{key}[{i}]", item, convert) for i, item in enumerate(raw)]
        return tuple(dict.fromkeys(v for v in values if v is not None))


_TOP_KEYS = frozenset({"listen", "upstreams", "clients", "timeouts", "limits", "metrics",
                       "admin", "shutdown", "require_client_auth", "inject_stream_usage",
                       "access_log", "cors", "ui", "failover"})


def _join(key: str, name: object) -> str:
    return str(name) if key == "(top level)" else f"{key}.{name}"


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _to_text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise TypeError(f"expected a string, got {_kind(value)}")
    return str(value)


def _to_optional_text(value: Any) -> str | None:
    return None if value is None else _to_text(value)


def _to_name(value: Any) -> str:
    text = _to_text(value)
    if not _NAME.match(text):
        raise ValueError(f"{text!r} is not a valid name (letters, digits, . _ -; at most 64)")
    return text


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
        return value.lower() in {"true", "yes", "1"}
    raise ValueError(f"expected true or false, got {value!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected a whole number, got {_kind(value)}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None


def _to_port(value: Any) -> int:
    port = _to_int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return port


def _to_positive_int(value: Any) -> int:
    number = _to_int(value)
    if number <= 0:
        raise ValueError(f"expected a positive number, got {number}")
    return number


def _to_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a number of seconds, got {_kind(value)}")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return seconds


def _to_non_negative_seconds(value: Any) -> float:
    return 0.0 if value in (0, "0") else _to_seconds(value)


def _to_endpoint(value: Any) -> str:
    text = _to_text(value).strip()
    if text == SIMULATOR_ENDPOINT:
        return text
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{text!r} is not scheme://host[:port] (e.g. "
                         "https://my-resource.openai.azure.com) nor `simulator`")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} must be only scheme://host[:port]; the proxy keeps the "
                         "client's path (/openai/...) as it is")
    try:
        _ = parts.port  # urlsplit validates the port only when it is read
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    return f"{parts.scheme}://{parts.netloc}"


def _to_sha256(value: Any) -> str:
    text = _to_text(value)
    if not _HEX64.match(text):
        raise ValueError("expected 64 hex digits (sha256 of the client's key)")
    return text.lower()


def _to_route(value: Any) -> str:
    text = _to_text(value)
    if not text.startswith("/") or text.startswith("/openai"):
        raise ValueError(f"{text!r} must start with / and not be under /openai")
    return text


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _to_origin(value: Any) -> str:
    """`*` or an origin as browsers send it: scheme://host[:port], nothing after."""
    text = _to_text(value).strip()
    if text == "*":
        return text
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path \
            or parts.query or parts.fragment or parts.username or text.endswith("/"):
        raise ValueError(f"{text!r} is not an origin: write scheme://host[:port] with no path "
                         "or trailing slash (e.g. https://app.example.com), or \"*\"")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    # Browsers send the scheme and host in lower case.
    return text.lower()


def _to_header_name(value: Any) -> str:
    text = _to_text(value).strip()
    if not _HEADER_NAME.match(text):
        raise ValueError(f"{text!r} is not a header name")
    return text.lower()


def _to_max_age(value: Any) -> int:
    seconds = _to_int(value)
    if not 0 <= seconds <= 86400:
        raise ValueError(f"expected seconds from 0 to 86400, got {seconds}")
    return seconds
