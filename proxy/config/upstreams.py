"""The `upstreams` list: each Azure resource (or the built-in simulator) and its deployments.

The routing keys of an upstream (priority, weight, aliases, simulator capacity) are parsed by
`proxy.routing.settings`, handed the same `Reader` so its problems are collected with the rest.
"""

from __future__ import annotations

from typing import Any

from proxy.config.model import SIMULATOR_ENDPOINT, UpstreamConfig
from proxy.config.reader import Reader
from proxy.config.validate import to_endpoint, to_name, to_optional_text
from proxy.routing import settings as routing
from proxy.scalars import kind


def upstreams(reader: Reader, raw: Any) -> tuple[UpstreamConfig, ...]:
    if raw is None:
        reader.problem("upstreams", "missing: list at least one upstream with an endpoint")
        return ()
    if not isinstance(raw, list) or not raw:
        reader.problem("upstreams", f"expected a non-empty list, got {kind(raw)}")
        return ()
    result = [upstream(reader, f"upstreams[{i}]", item) for i, item in enumerate(raw)]
    found = [u for u in result if u is not None]
    names = [u.name for u in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        reader.problem("upstreams", f"name {name!r} is used more than once")
    return tuple(found)


def upstream(reader: Reader, key: str, raw: Any) -> UpstreamConfig | None:
    section = reader.mapping(key, raw, frozenset({"name", "endpoint", "api_key", "deployments"})
                             | routing.UPSTREAM_KEYS)
    if section is None:
        return None
    name = reader.scalar(f"{key}.name", section.get("name", "primary"), to_name)
    if "endpoint" not in section:
        reader.problem(f"{key}.endpoint", "missing: the Azure resource URL "
                       "(https://NAME.openai.azure.com) or `simulator`")
        endpoint = None
    else:
        endpoint = reader.scalar(f"{key}.endpoint", section["endpoint"], to_endpoint)
    api_key = reader.scalar(f"{key}.api_key", section.get("api_key"), to_optional_text)
    deployments, aliases = routing.deployments(
        reader, f"{key}.deployments", section.get("deployments", []), to_name)
    capacity = routing.simulator_capacity(reader, f"{key}.simulator", section.get("simulator"),
                                          endpoint == SIMULATOR_ENDPOINT)
    priority = routing.priority(reader, key, section)
    weight = routing.weight(reader, key, section)
    if name is None or endpoint is None:
        return None
    return UpstreamConfig(name=name, endpoint=endpoint, api_key=api_key or None,
                          deployments=deployments, aliases=aliases, priority=priority,
                          weight=weight, simulator=capacity)
