"""The Kubernetes manifests render, are valid for the stated Kubernetes versions, and agree with
each other and with the proxy: ports, paths, job name, drain times, security settings.

Needs `kubectl` (for `kubectl kustomize`); without it these tests fail when CI is set.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from prometheus_client import CollectorRegistry

from proxy.config import parse_config
from proxy.telemetry.metrics import Metrics
from tests.deploy.k8s import (
    CUSTOM_KINDS,
    DEPLOY,
    KUBERNETES_VERSIONS,
    NAME,
    ROOT,
    Obj,
    config_path,
    container,
    container_port,
    deployment,
    env_names,
    find,
    one,
    service_target,
    shipped_config,
)

pytestmark = pytest.mark.e2e

Renderings = dict[Path, list[Obj]]
OVERLAYS = {DEPLOY, DEPLOY / "base", DEPLOY / "overlays" / "monitoring",
            DEPLOY / "overlays" / "keda"}
MIN_DRAIN = 300
"""Seconds: streams from reasoning models and long answers run for minutes."""
MARGIN = 30
"""Seconds the kubelet's SIGKILL must come after the proxy's own worst case."""
DASHBOARD = ROOT / "grafana" / "dashboards" / "aoai-stream-proxy.json"
SECRET_ENV = ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY")


def pod_spec(objects: list[Obj]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(objects)["spec"]["template"]["spec"]
    return spec


def proxy_config(objects: list[Obj]) -> Any:
    env = {name: "https://example.openai.azure.com" for name in env_names(objects)}
    return parse_config(shipped_config(objects), env, source="ConfigMap config.yaml")


def alert_jobs() -> set[str]:
    text = (ROOT / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    return set(re.findall(r'\bjob="([^"]+)"', text))


def dashboard_jobs() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t.get("expr", "") for panel in dashboard["panels"] for t in panel.get("targets", [])]
    return {job for expr in exprs for job in re.findall(r'\bjob="([^"]+)"', expr)}


def quantity(value: str | int) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores, bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_every_kustomization_renders(renderings: Renderings) -> None:
    assert OVERLAYS <= set(renderings), sorted(map(str, renderings))
    for directory, objects in renderings.items():
        kinds = {o["kind"] for o in objects}
        assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds, directory


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_pass_strict_schema_validation(renderings: Renderings,
                                                    version: str) -> None:
    for directory, objects in renderings.items():
        for obj in objects:
            if obj["kind"] in CUSTOM_KINDS:
                continue
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{directory}: {obj['kind']}/{obj['metadata']['name']} is not "
                            f"valid for Kubernetes {version}: {exc.message}")


def test_strict_validation_rejects_an_unknown_field(default_objects: list[Obj]) -> None:
    broken = copy.deepcopy(deployment(default_objects))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 660
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_components_are_off_by_default(default_objects: list[Obj]) -> None:
    assert not [o for o in default_objects if o["kind"] in CUSTOM_KINDS]
    assert one(default_objects, "HorizontalPodAutoscaler", NAME)


def test_keda_replaces_the_hpa(renderings: Renderings) -> None:
    objects = renderings[DEPLOY / "overlays" / "keda"]
    assert not find(objects, "HorizontalPodAutoscaler")
    scaled = one(objects, "ScaledObject", NAME)
    assert scaled["spec"]["scaleTargetRef"]["name"] == NAME


def test_every_rendering_has_exactly_one_autoscaler_keeping_two_pods(
        renderings: Renderings) -> None:
    for directory, objects in renderings.items():
        hpas = [h for h in find(objects, "HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1",
                                                   "kind": "Deployment", "name": NAME}]
        scaled = [s for s in find(objects, "ScaledObject")
                  if s["spec"]["scaleTargetRef"]["name"] == NAME]
        assert len(hpas) + len(scaled) == 1, directory
        minimum = (hpas[0]["spec"]["minReplicas"] if hpas
                   else scaled[0]["spec"]["minReplicaCount"])
        assert minimum >= 2, directory
        # The autoscaler owns the count: a fixed one would be reset on every apply.
        assert "replicas" not in deployment(objects)["spec"], directory


def test_keda_scales_on_in_flight_requests_per_pod(renderings: Renderings) -> None:
    scaled = one(renderings[DEPLOY / "overlays" / "keda"], "ScaledObject", NAME)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger.get("metricType", "AverageValue") == "AverageValue", "threshold per pod"
    query = trigger["metadata"]["query"]
    registry = CollectorRegistry()
    Metrics(registry, ("gpt-4o",), ())
    exported = {s.name for family in registry.collect() for s in family.samples}
    named = set(re.findall(r"\b(aoai_proxy_[a-z_]+)\b", query))
    assert named == {"aoai_proxy_in_flight_requests"}, query
    assert named <= exported
    assert re.findall(r'job="([^"]+)"', query) == [NAME], query
    assert float(trigger["metadata"]["threshold"]) > 0


def test_servicemonitor_selects_the_service_and_scrapes_the_metrics_port(
        renderings: Renderings) -> None:
    for directory, objects in renderings.items():
        monitors = find(objects, "ServiceMonitor")
        if not monitors:
            continue
        (monitor,) = monitors
        service = one(objects, "Service", NAME)
        wanted = monitor["spec"]["selector"]["matchLabels"]
        labels = service["metadata"]["labels"]
        assert wanted.items() <= labels.items(), (directory, wanted, labels)
        assert "namespaceSelector" not in monitor["spec"], "the Service is in its namespace"
        (endpoint,) = monitor["spec"]["endpoints"]
        config = proxy_config(objects)
        assert config.admin is not None
        assert service_target(objects, endpoint["port"]) == config.admin.port, (
            "the ServiceMonitor must scrape the port the proxy serves metrics on")
        assert endpoint.get("path", "/metrics") == config.metrics.path
        assert config.metrics.bearer_token is None or "authorization" in endpoint


def test_scrape_job_is_the_one_the_alerts_and_dashboard_select(renderings: Renderings) -> None:
    objects = renderings[DEPLOY / "overlays" / "monitoring"]
    monitor = one(objects, "ServiceMonitor", NAME)
    service = one(objects, "Service", NAME)
    # The Prometheus Operator's job label: the Service label named by jobLabel, else the
    # Service's name.
    job_label = monitor["spec"].get("jobLabel")
    job = service["metadata"]["labels"][job_label] if job_label else service["metadata"]["name"]
    assert alert_jobs() == {job}
    assert dashboard_jobs() == {job}


def test_service_and_budget_select_the_pods(default_objects: list[Obj]) -> None:
    pod_labels = deployment(default_objects)["spec"]["template"]["metadata"]["labels"]
    service = one(default_objects, "Service", NAME)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    budget = one(default_objects, "PodDisruptionBudget", NAME)
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "metrics"}
    config = proxy_config(default_objects)
    assert service_target(default_objects, "http") == config.listen.port


def test_grace_period_covers_the_configured_drain(default_objects: list[Obj]) -> None:
    shutdown = proxy_config(default_objects).shutdown
    pre_stop = container(default_objects).get("lifecycle", {}).get("preStop", {})
    pre_stop_sleep = pre_stop.get("sleep", {}).get("seconds", 0)
    assert "exec" not in pre_stop, "a preStop command's duration cannot be checked here"
    grace_period = pod_spec(default_objects)["terminationGracePeriodSeconds"]
    assert shutdown.drain_timeout >= MIN_DRAIN
    needed = pre_stop_sleep + shutdown.grace + shutdown.drain_timeout + MARGIN
    assert grace_period >= needed, (
        f"terminationGracePeriodSeconds {grace_period} < preStop {pre_stop_sleep} + grace "
        f"{shutdown.grace} + drain_timeout {shutdown.drain_timeout} + margin {MARGIN}")
    # Readiness must be able to notice the 503 within the grace, for load balancers that
    # follow it rather than the endpoint removal.
    readiness = container(default_objects)["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < shutdown.grace


def test_probes_are_on_the_admin_listener(default_objects: list[Obj]) -> None:
    config = proxy_config(default_objects)
    assert config.admin is not None, "the admin listener stays up while the proxy drains"
    proxy = container(default_objects)
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz",
                "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        action = proxy[probe]["httpGet"]
        assert action["path"] == path, probe
        assert container_port(default_objects, action["port"]) == config.admin.port, probe


def test_the_configmap_holds_a_valid_config_for_the_container(
        default_objects: list[Obj]) -> None:
    config = proxy_config(default_objects)
    assert config.listen.host == "0.0.0.0" and config.admin is not None
    assert config.admin.host == "0.0.0.0", "the kubelet probes from outside the pod"
    ports = {p["name"]: p["containerPort"] for p in container(default_objects)["ports"]}
    assert ports == {"http": config.listen.port, "admin": config.admin.port}
    assert config_path(default_objects).name == "config.yaml"
    args = container(default_objects)["args"]
    assert args[args.index("--workers") + 1] == "1", "one worker per pod; scale with replicas"


def test_the_azure_key_comes_from_a_secret_the_user_creates(renderings: Renderings) -> None:
    for directory, objects in renderings.items():
        assert not find(objects, "Secret"), f"{directory} ships a Secret"
    env = env_names(renderings[DEPLOY])
    refs = {name: env[name]["valueFrom"]["secretKeyRef"] for name in SECRET_ENV}
    (secret,) = {ref["name"] for ref in refs.values()}
    text = shipped_config(renderings[DEPLOY])
    for name in SECRET_ENV:
        assert "${" + name in text, f"the config does not read {name}"
    # The README's command creates exactly that Secret with those keys.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.replace("\\\n", " ").splitlines()
                if f"kubectl create secret generic {secret}" in line]
    assert commands, f"README does not say how to create the Secret {secret}"
    words = shlex.split(commands[0])
    given = {w.removeprefix("--from-literal=").split("=", 1)[0] for w in words
             if w.startswith("--from-literal=")}
    assert {ref["key"] for ref in refs.values()} <= given, commands[0]


def test_the_pod_runs_locked_down(default_objects: list[Obj]) -> None:
    spec = pod_spec(default_objects)
    pod = spec["securityContext"]
    proxy = container(default_objects)["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert proxy["readOnlyRootFilesystem"] is True
    assert proxy["allowPrivilegeEscalation"] is False
    assert proxy["capabilities"]["drop"] == ["ALL"] and "add" not in proxy["capabilities"]
    # The image's user: runAsNonRoot can only verify a numeric USER.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"^USER {pod['runAsUser']}:{pod['runAsGroup']}$", dockerfile, re.MULTILINE)
    # Where the proxy writes (tempfile's directory, --workers' metrics directory) is an
    # emptyDir; everything else mounted is read-only.
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container(default_objects)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    for path, mount in mounts.items():
        assert mount.get("readOnly") or "emptyDir" in volumes[mount["name"]], path


def test_resources_have_requests_and_limits(default_objects: list[Obj]) -> None:
    resources = container(default_objects)["resources"]
    for name in ("cpu", "memory"):
        assert quantity(resources["requests"][name]) <= quantity(resources["limits"][name])
