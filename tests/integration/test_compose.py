"""docker-compose.yml is valid, and everything it and the images point at exists in the repo.

There is no Docker engine in the test environment, so images are not built or run: the checks
go through `docker-compose config` (the normalised file) and then follow every path a
container would read back to the file in this repository. Without docker-compose (or the
`docker compose` plugin) the tests fail when CI is set and are skipped otherwise.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from proxy.__main__ import build_parser
from proxy.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"proxy", "prometheus", "grafana", "simulator", "loadgen"}
DEMO_ONLY = {"simulator", "loadgen"}
# Variables the compose file interpolates; unset so the test sees the defaults.
COMPOSE_VARIABLES = ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "GRAFANA_ADMIN_PASSWORD")


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=60, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    message = "neither docker-compose nor `docker compose` is installed"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    result = subprocess.run(
        [*compose_command(), "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = config["services"]
    return found


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of each bind mount, in either compose's output format."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):  # docker-compose 1.x: "/host:/container[:ro]"
            source, target = volume.split(":")[:2]
        else:  # docker compose 2.x: {type: bind, source, target, read_only}
            assert volume["type"] == "bind", volume
            source, target = volume["source"], volume["target"]
        mounts.append((Path(source), PurePosixPath(target)))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a container sees at `container_path`, through its bind mounts."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(service):
        if wanted == target or target in wanted.parents:
            return source.joinpath(*wanted.relative_to(target).parts)
    raise AssertionError(f"{container_path} is not mounted from the host")


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, str):
            published, target = port.split(":")[-2:]
        else:
            published, target = port["published"], port["target"]
        ports.add((int(published), int(target)))
    return ports


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """`config` normalises `environment` to a mapping; unset pass-through variables are null."""
    return dict(service.get("environment", {}))


def test_services_ports_and_profiles(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES
    assert published_ports(services["proxy"]) == {(8080, 8080)}
    assert published_ports(services["prometheus"]) == {(9090, 9090)}
    assert published_ports(services["grafana"]) == {(3000, 3000)}
    for name, service in services.items():
        expected = ["demo"] if name in DEMO_ONLY else None
        assert service.get("profiles") == expected, name


def test_every_bind_mount_exists_in_the_repo(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert source.exists(), f"{name}: {source} does not exist"
            assert ROOT in (source, *source.parents), f"{name}: {source} is outside the repo"


def test_images_built_from_the_repo_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in ("proxy", "simulator", "loadgen"):
        service = services[name]
        context = Path(service["build"]["context"])
        assert context == ROOT, name
        assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
        assert service["image"] == services["proxy"]["image"], name
        assert service.get("init") is True, name


def test_proxy_service(services: dict[str, dict[str, Any]]) -> None:
    proxy = services["proxy"]
    assert proxy["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    assert "/healthz" in " ".join(proxy["healthcheck"]["test"])
    env = environment(proxy)
    assert {"AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"} <= set(env)
    # The Dockerfile's CMD reads the config where compose mounts docker/proxy.yaml.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    config_path = yaml.safe_load(cmd)[1]
    mounted = host_path(proxy, config_path)
    assert mounted == ROOT / "docker" / "proxy.yaml"
    config = load_config(mounted, {})
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 8080)
    (upstream,) = config.upstreams
    assert upstream.endpoint == "http://simulator:8000"
    assert upstream.api_key is None, "empty AZURE_OPENAI_API_KEY must forward the client's key"
    assert set(upstream.deployments) == {"gpt-4o", "gpt-4o-mini"}
    real = load_config(
        mounted,
        {"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com", "AZURE_OPENAI_API_KEY": "k"},
    )
    assert real.upstreams[0].endpoint == "https://x.openai.azure.com"
    assert real.upstreams[0].api_key == "k"


def test_prometheus_service_reads_the_repo_rules(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus")
    (flag,) = [c for c in prometheus["command"] if c.startswith("--config.file=")]
    container_config = flag.split("=", 1)[1]
    config_file = host_path(prometheus, container_config)
    assert config_file == ROOT / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    for rule_file in config["rule_files"]:
        in_container = PurePosixPath(container_config).parent / rule_file
        assert host_path(prometheus, str(in_container)).is_file(), rule_file
    targets = [
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert targets == ["proxy:8080"]


def test_grafana_provisioning_resolves(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana")
    env = environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = host_path(grafana, str(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]))
    assert home == ROOT / "grafana" / "dashboards" / "aoai-stream-proxy.json"

    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    (datasources,) = (provisioning / "datasources").glob("*.yml")
    (source,) = yaml.safe_load(datasources.read_text(encoding="utf-8"))["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in services and (9090, 9090) in published_ports(services["prometheus"])

    (providers_file,) = (provisioning / "dashboards").glob("*.yml")
    (provider,) = yaml.safe_load(providers_file.read_text(encoding="utf-8"))["providers"]
    dashboards = host_path(grafana, provider["options"]["path"])
    assert home.parent == dashboards
    assert sorted(p.name for p in dashboards.glob("*.json")) == ["aoai-stream-proxy.json"]


def test_demo_services_use_the_real_command_line(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    simulate = parser.parse_args(services["simulator"]["command"])
    assert (simulate.command, simulate.host, simulate.port) == ("simulate", "0.0.0.0", 8000)
    loadgen = parser.parse_args(services["loadgen"]["command"])
    assert loadgen.command == "loadgen"
    assert loadgen.target == "http://proxy:8080"
    assert loadgen.duration == 86400
    assert services["loadgen"]["healthcheck"]["test"] == ["NONE"]
    assert "proxy" in services["loadgen"]["depends_on"]


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages[-1] == "python:3.11-slim"
    assert re.search(r"^USER (?!root\b|0\b)\S+", text, re.MULTILINE), "must not run as root"
    assert re.search(r"^EXPOSE 8080$", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*urllib.*/healthz", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["aoai-stream-proxy"\]$', text, re.MULTILINE)


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "allow-list expected"
    for needed in ("pyproject.toml", "proxy"):
        assert f"!{needed}" in patterns, needed


def test_the_image_gets_every_proxy_package() -> None:
    """The Dockerfile runs `pip install .`: setuptools must ship every subpackage of proxy/.

    An explicit `packages = ["proxy"]` leaves out `proxy/simulator/`, and the installed
    command then fails on import; tests that import from the source tree do not notice.
    """
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "proxy").rglob("__init__.py")
    }
    declared = pyproject.get("tool", {}).get("setuptools", {}).get("packages")
    if isinstance(declared, list):
        assert packages <= set(declared), (
            f"missing from packages: {sorted(packages - set(declared))}"
        )
    elif isinstance(declared, dict) and "find" in declared:
        include = declared["find"].get("include", ["*"])
        for package in packages:
            assert any(fnmatch.fnmatch(package, pattern) for pattern in include), package
