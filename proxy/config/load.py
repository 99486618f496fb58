"""Configuration: YAML -> frozen dataclasses, validated once.

`load_config(path, environ)` reads the file, substitutes `${VAR}` / `${VAR:-default}` from the
given environment (never from `os.environ` directly, so tests stay hermetic) and checks every key.
All problems are collected and raised together in one `ConfigError`, each naming the file and
the key, so a user fixes a broken file in one pass instead of one error per restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from proxy.config import sections
from proxy.config.model import Config, ConfigError
from proxy.config.reader import TOP_LEVEL, Reader
from proxy.config.upstreams import upstreams
from proxy.config.validate import to_bool
from proxy.routing import settings as routing

_TOP_KEYS = frozenset({"listen", "upstreams", "clients", "timeouts", "limits", "metrics",
                       "admin", "shutdown", "require_client_auth", "inject_stream_usage",
                       "access_log", "cors", "ui", "failover"})


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
    reader = Reader(source, environ)
    config = _config(reader, raw if raw is not None else {})
    if reader.problems or config is None:
        raise ConfigError(reader.problems)
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, without PyYAML's snippet of the line (it may hold a literal key)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _config(reader: Reader, raw: Any) -> Config | None:
    # The order of the calls is the order problems are listed in; keep it.
    section = reader.mapping(TOP_LEVEL, raw, _TOP_KEYS)
    if section is None:
        return None
    found = upstreams(reader, section.get("upstreams"))
    clients = sections.clients(reader, section.get("clients", []))
    require_auth = reader.scalar("require_client_auth",
                                 section.get("require_client_auth", False), to_bool)
    if require_auth:
        sections.check_auth(reader, found, clients, bool(section.get("clients")))
    return Config(
        upstreams=found,
        listen=sections.listen(reader, section.get("listen", {})),
        clients=clients,
        timeouts=sections.timeouts(reader, section.get("timeouts", {})),
        limits=sections.limits(reader, section.get("limits", {})),
        metrics=sections.metrics(reader, section.get("metrics", {})),
        admin=sections.listen(reader, section["admin"], key="admin")
        if "admin" in section else None,
        shutdown=sections.shutdown(reader, section.get("shutdown", {})),
        failover=routing.failover(reader, section.get("failover", {})),
        require_client_auth=bool(require_auth),
        inject_stream_usage=reader.scalar(
            "inject_stream_usage", section.get("inject_stream_usage", True), to_bool
        )
        or False,
        access_log=reader.scalar("access_log", section.get("access_log", True), to_bool)
        or False,
        cors=sections.cors(reader, section.get("cors", {})),
        ui=reader.scalar("ui", section.get("ui", True), to_bool) is not False,
        source=reader.source,
    )
