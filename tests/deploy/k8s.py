"""Reading the rendered Kubernetes manifests (plain helpers; the fixtures are in conftest).

`kubectl kustomize` renders each kustomization under deploy/kubernetes; the helpers find the
objects in it and follow its references the way Kubernetes does: a probe's or a Service's
named port to the container port, the container port to the proxy config's listener, the
mounted ConfigMap to the config file the container's `--config` names.
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
NAME = "aoai-stream-proxy"
KUBERNETES_VERSIONS = ("1.30", "1.37")
"""What the core objects are validated against: the oldest Kubernetes we claim, and the newest
whose schemas kubernetes-validate (>= 1.37) bundles."""
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
"""Kinds of the Prometheus Operator and KEDA: no bundled schema, checked field by field."""

Obj = dict[str, Any]


def kustomizations() -> list[Path]:
    """Every directory that `kubectl kustomize` can render: the root, base, each overlay
    (components render only as part of a kustomization, so they are not listed)."""
    found = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))
    return [d for d in found if "components" not in d.relative_to(DEPLOY).parts]


def render(kubectl: str, directory: Path) -> list[Obj]:
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def deployment(objects: list[Obj]) -> Obj:
    return one(objects, "Deployment", NAME)


def container(objects: list[Obj]) -> Obj:
    (proxy,) = deployment(objects)["spec"]["template"]["spec"]["containers"]
    return dict(proxy)


def container_port(objects: list[Obj], port: int | str) -> int:
    """A container port by number or by name."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container(objects).get("ports", [])
               if p.get("name") == port]
    assert numbers, f"the container has no port named {port!r}"
    return int(numbers[0])


def service_target(objects: list[Obj], service_port_name: str) -> int:
    """The container port that a Service port (by name) sends to."""
    service = one(objects, "Service", NAME)
    ports = [p for p in service["spec"]["ports"] if p.get("name") == service_port_name]
    assert ports, f"the Service has no port named {service_port_name!r}"
    return container_port(objects, ports[0].get("targetPort", ports[0]["port"]))


def config_path(objects: list[Obj]) -> PurePosixPath:
    args = [*container(objects).get("command", []), *container(objects).get("args", [])]
    assert "--config" in args, f"the container names no --config: {args}"
    return PurePosixPath(args[args.index("--config") + 1])


def serve_args(objects: list[Obj]) -> list[str]:
    """The container's arguments without `--config PATH` (a test gives its own file)."""
    args = list(container(objects).get("args", []))
    at = args.index("--config")
    return args[:at] + args[at + 2:]


def shipped_config(objects: list[Obj]) -> str:
    """The text of the config file the container reads: the file `--config` names, found in
    the ConfigMap mounted at its directory."""
    path = config_path(objects)
    mounts = {m["name"]: PurePosixPath(m["mountPath"])
              for m in container(objects).get("volumeMounts", [])}
    volumes = {v["name"]: v for v in deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    for volume, mount in mounts.items():
        source = volumes[volume].get("configMap")
        if source is None or path.parent != mount:
            continue
        configmap = one(objects, "ConfigMap", source["name"])
        assert path.name in configmap["data"], f"{source['name']} has no key {path.name}"
        text: str = configmap["data"][path.name]
        return text
    raise AssertionError(f"no ConfigMap is mounted where --config {path} points")


def env_names(objects: list[Obj]) -> dict[str, Obj]:
    """The container's environment variables by name, with their definitions."""
    return {e["name"]: e for e in container(objects).get("env", [])}


def for_test(config_text: str, ports: dict[int, int], **sections: Any) -> str:
    """The shipped config listening on 127.0.0.1 with the test's ports (`ports` maps the
    shipped port numbers to them); `sections` replace whole top-level keys."""
    config = yaml.safe_load(config_text)
    for key in ("listen", "admin"):
        if key in config:
            config[key] = {"host": "127.0.0.1", "port": ports[config[key]["port"]]}
    config.update(sections)
    return yaml.safe_dump(config, sort_keys=False)
