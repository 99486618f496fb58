"""The small sections: listen/admin, clients (and the client-auth check), timeouts, limits,
metrics, shutdown and cors. Each takes the `Reader` and returns its dataclass, the defaults
standing in for whatever is missing or wrong (the problem is recorded, not raised)."""

from __future__ import annotations

import hashlib
from typing import Any

from proxy.config.model import (
    ClientConfig,
    CorsConfig,
    LimitsConfig,
    ListenConfig,
    MetricsConfig,
    ShutdownConfig,
    TimeoutsConfig,
    UpstreamConfig,
)
from proxy.config.reader import Reader
from proxy.config.validate import (
    to_header_name,
    to_max_age,
    to_name,
    to_non_negative_seconds,
    to_optional_text,
    to_origin,
    to_port,
    to_route,
    to_seconds,
    to_sha256,
    to_text,
)
from proxy.scalars import kind, to_positive_int


def listen(reader: Reader, raw: Any, key: str = "listen") -> ListenConfig:
    section = reader.mapping(key, raw, frozenset({"host", "port"}))
    if section is None:
        return ListenConfig()
    host = reader.scalar(f"{key}.host", section.get("host", "127.0.0.1"), to_text)
    port = reader.scalar(f"{key}.port", section.get("port", 8080), to_port)
    return ListenConfig(host=host or "127.0.0.1", port=8080 if port is None else port)


def check_auth(reader: Reader, upstreams: tuple[UpstreamConfig, ...],
               clients: tuple[ClientConfig, ...], listed: bool) -> None:
    """Client auth only makes sense when the proxy, not the app, holds the Azure key."""
    if not listed:
        reader.problem("require_client_auth", "needs at least one entry in `clients`")
    for i, upstream in enumerate(upstreams):
        if upstream.api_key is None and not upstream.is_simulator:
            reader.problem(f"upstreams[{i}].api_key", "must be set when "
                           "require_client_auth is true (clients then hold proxy keys, "
                           "not Azure keys)")


def shutdown(reader: Reader, raw: Any) -> ShutdownConfig:
    section = reader.mapping("shutdown", raw, frozenset({"grace", "drain_timeout"}))
    if section is None:
        return ShutdownConfig()
    default = ShutdownConfig()
    grace = reader.scalar("shutdown.grace", section.get("grace", default.grace),
                          to_non_negative_seconds)
    drain = reader.scalar("shutdown.drain_timeout",
                          section.get("drain_timeout", default.drain_timeout), to_seconds)
    return ShutdownConfig(grace=default.grace if grace is None else grace,
                          drain_timeout=drain or default.drain_timeout)


def clients(reader: Reader, raw: Any) -> tuple[ClientConfig, ...]:
    if not isinstance(raw, list):
        reader.problem("clients", f"expected a list, got {kind(raw)}")
        return ()
    found = [client(reader, f"clients[{i}]", item) for i, item in enumerate(raw)]
    return tuple(c for c in found if c is not None)


def client(reader: Reader, key: str, raw: Any) -> ClientConfig | None:
    section = reader.mapping(key, raw, frozenset({"name", "key_sha256", "key"}))
    if section is None:
        return None
    name = reader.scalar(f"{key}.name", section.get("name"), to_name)
    if ("key" in section) == ("key_sha256" in section):
        reader.problem(key, "give exactly one of `key` (e.g. ${APP_KEY}) or `key_sha256`")
        return None
    if "key" in section:
        plain = reader.scalar(f"{key}.key", section["key"], to_text)
        digest = hashlib.sha256(plain.encode()).hexdigest() if plain else None
        if plain == "":
            reader.problem(f"{key}.key", "is empty")
    else:
        digest = reader.scalar(f"{key}.key_sha256", section["key_sha256"], to_sha256)
    if name is None or digest is None:
        return None
    return ClientConfig(name=name, key_sha256=digest)


def timeouts(reader: Reader, raw: Any) -> TimeoutsConfig:
    names = ("connect", "response", "idle", "client")
    section = reader.mapping("timeouts", raw, frozenset(names))
    if section is None:
        return TimeoutsConfig()
    default = TimeoutsConfig()
    values = {
        name: reader.scalar(f"timeouts.{name}", section.get(name, getattr(default, name)),
                            to_seconds)
        for name in names
    }
    return TimeoutsConfig(**{k: v for k, v in values.items() if v is not None})


def limits(reader: Reader, raw: Any) -> LimitsConfig:
    names = ("max_request_body_bytes", "max_event_bytes")
    section = reader.mapping("limits", raw, frozenset(names))
    if section is None:
        return LimitsConfig()
    default = LimitsConfig()
    values = {
        name: reader.scalar(f"limits.{name}", section.get(name, getattr(default, name)),
                            to_positive_int)
        for name in names
    }
    return LimitsConfig(**{k: v for k, v in values.items() if v is not None})


def metrics(reader: Reader, raw: Any) -> MetricsConfig:
    section = reader.mapping("metrics", raw, frozenset({"path", "bearer_token"}))
    if section is None:
        return MetricsConfig()
    path = reader.scalar("metrics.path", section.get("path", "/metrics"), to_route)
    token = reader.scalar("metrics.bearer_token", section.get("bearer_token"),
                          to_optional_text)
    return MetricsConfig(path=path or "/metrics", bearer_token=token or None)


def cors(reader: Reader, raw: Any) -> CorsConfig:
    section = reader.mapping("cors", raw, frozenset({"allow_origins", "allow_headers",
                                                     "max_age"}))
    if section is None:
        return CorsConfig()
    origins = reader.texts("cors.allow_origins", section.get("allow_origins", []), to_origin)
    headers = reader.texts("cors.allow_headers", section.get("allow_headers", []),
                           to_header_name)
    max_age = reader.scalar("cors.max_age", section.get("max_age", 600), to_max_age)
    return CorsConfig(allow_origins=origins, allow_headers=headers,
                      max_age=600 if max_age is None else max_age)
