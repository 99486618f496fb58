"""What the page is told about the configured deployments, and that its files are packaged."""

from __future__ import annotations

from proxy.config import Config, UpstreamConfig
from proxy.ui.routes import load_assets, page_info


def test_a_deployment_is_simulated_only_when_no_real_upstream_serves_it() -> None:
    config = Config(upstreams=(
        UpstreamConfig("sim", "simulator", deployments=("a", "b")),
        UpstreamConfig("azure", "https://r.openai.azure.com", deployments=("b", "c"))))
    assert page_info(config) == {"deployments": [
        {"name": "a", "simulated": True}, {"name": "b", "simulated": False},
        {"name": "c", "simulated": False}]}


def test_every_file_the_page_loads_is_in_the_package() -> None:
    assets = load_assets()
    html = assets["index.html"].body.decode()
    for name in ("app.js", "style.css"):
        assert f"/_proxy/ui/{name}" in html and name in assets
    for module in ("app.js", "wire.js", "chart.js"):
        for imported in assets[module].body.decode().split('from "./')[1:]:
            assert imported.split('"', 1)[0] in assets, (module, imported[:20])
    assert {a.content_type.split(";")[0] for a in assets.values()} <= {
        "text/html", "text/javascript", "text/css"}
