from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config, parse_config

MINIMAL = """
upstreams:
  - name: primary
    endpoint: https://my-resource.openai.azure.com
"""


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ or {}, source="proxy.yaml")
    return info.value.problems


def test_minimal_config_gets_documented_defaults() -> None:
    config = parse_config(MINIMAL, {})
    assert config.listen.host == "127.0.0.1" and config.listen.port == 8080
    assert config.upstreams[0].endpoint == "https://my-resource.openai.azure.com"
    assert config.upstreams[0].api_key is None
    assert config.inject_stream_usage is True
    assert config.timeouts.idle == 300 and config.timeouts.connect == 10


def test_shipped_example_runs_as_is_on_the_simulator() -> None:
    config = load_config(Path(__file__).parents[2] / "config.yaml", {})
    assert config.upstreams[0].is_simulator
    assert config.upstreams[0].api_key is None
    assert config.deployments == ("gpt-4o", "gpt-4o-mini")


def test_shipped_example_takes_azure_settings_from_the_environment() -> None:
    env = {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com/",
           "AZURE_OPENAI_API_KEY": "k1", "PROXY_PORT": "9001"}
    config = load_config(Path(__file__).parents[2] / "config.yaml", env)
    assert config.upstreams[0].endpoint == "https://r.openai.azure.com"
    assert config.upstreams[0].api_key == "k1"
    assert config.listen.port == 9001


def test_env_substitution_and_defaults() -> None:
    text = MINIMAL.replace("https://my-resource.openai.azure.com", "${EP}") + \
        "    api_key: ${KEY:-}\n"
    config = parse_config(text, {"EP": "http://127.0.0.1:9"})
    assert config.upstreams[0].endpoint == "http://127.0.0.1:9"
    assert config.upstreams[0].api_key is None
    # As in the shell, a set-but-empty variable takes the default too.
    text = MINIMAL.replace("https://my-resource.openai.azure.com", "${EP:-simulator}")
    assert parse_config(text, {"EP": ""}).upstreams[0].is_simulator


def test_every_problem_is_listed_at_once_with_file_and_key() -> None:
    text = """
listen:
  port: eighty
  hots: 0.0.0.0
upstreams:
  - name: a
    api_key: ${MISSING_KEY}
  - name: b
    endpoint: ftp://x
    deployments: gpt-4o
timeouts:
  idle: -1
"""
    found = problems(text)
    expected = [
        "proxy.yaml: listen.port: expected a whole number, got 'eighty'",
        "proxy.yaml: listen.hots: unknown key",
        "proxy.yaml: upstreams[0].endpoint: missing",
        "proxy.yaml: upstreams[0].api_key: environment variable MISSING_KEY is not set",
        "proxy.yaml: upstreams[1].endpoint: 'ftp://x' is not scheme://host[:port]",
        "proxy.yaml: upstreams[1].deployments: expected a list of names, got a string",
        "proxy.yaml: timeouts.idle: expected a positive number of seconds",
    ]
    for prefix in expected:
        assert any(p.startswith(prefix) for p in found), (prefix, found)
    assert len(found) == len(expected)


def test_endpoint_with_path_is_rejected_with_a_reason() -> None:
    found = problems(MINIMAL.replace(".com", ".com/openai"))
    assert "keeps the client's path" in found[0]


def test_secret_values_never_appear_in_errors_or_repr() -> None:
    text = MINIMAL + "    api_key: ${SECRET}\n    deployments: 7\n"
    config_error = problems(text.replace("deployments: 7", "deployments: []") + "bogus: 1\n",
                            {"SECRET": "sk-very-secret-1234"})
    assert not any("sk-very-secret-1234" in p for p in config_error)
    config = parse_config(text.replace("deployments: 7", "deployments: []"),
                          {"SECRET": "sk-very-secret-1234"})
    assert "sk-very-secret-1234" not in repr(config)


def test_clients_by_hash_or_by_key_from_environment() -> None:
    digest = hashlib.sha256(b"app-a-key").hexdigest()
    text = MINIMAL + f"""
clients:
  - name: app-a
    key_sha256: {digest.upper()}
  - name: app-b
    key: ${{APP_B}}
"""
    config = parse_config(text, {"APP_B": "app-b-key"})
    assert [(c.name, c.key_sha256) for c in config.clients] == [
        ("app-a", digest), ("app-b", hashlib.sha256(b"app-b-key").hexdigest())]


def test_client_needs_exactly_one_key_form() -> None:
    found = problems(MINIMAL + "clients:\n  - name: x\n")
    assert found == [("proxy.yaml: clients[0]: give exactly one of `key` (e.g. ${APP_KEY}) "
                     "or `key_sha256`")]


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "nope.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad, {})


def test_missing_upstreams() -> None:
    assert problems("listen: {port: 1}\n") == [
        "proxy.yaml: upstreams: missing: list at least one upstream with an endpoint"]


def test_cors_and_ui_defaults_leave_cors_off_and_the_page_on() -> None:
    config = parse_config(MINIMAL, {})
    assert not config.cors.enabled and config.cors.allow_origins == ()
    assert config.cors.max_age == 600 and config.ui is True


def test_cors_settings_are_read_and_normalised() -> None:
    config = parse_config(MINIMAL + """
cors:
  allow_origins: ["https://App.Example.com", "http://127.0.0.1:5173", "*"]
  allow_headers: [X-App-Trace]
  max_age: 0
ui: false
""", {})
    assert config.cors.allow_origins == ("https://app.example.com", "http://127.0.0.1:5173", "*")
    assert config.cors.allow_headers == ("x-app-trace",) and config.cors.max_age == 0
    assert config.ui is False


def test_bad_cors_and_ui_values_are_all_named_at_once() -> None:
    found = problems(MINIMAL + """
cors:
  allow_origins: ["https://app.example.com/", "app.example.com", "https://a.com/path", 3]
  allow_headers: ["bad header"]
  max_age: 90000
  allow_methods: [GET]
ui: maybe
""")
    joined = "\n".join(found)
    for key in ("cors.allow_origins[0]", "cors.allow_origins[1]", "cors.allow_origins[2]",
                "cors.allow_origins[3]", "cors.allow_headers[0]", "cors.max_age",
                "cors.allow_methods", "ui"):
        assert f"proxy.yaml: {key}: " in joined
    assert len(found) == 8
    assert problems(MINIMAL + "cors: [x]\n") == ["proxy.yaml: cors: expected a mapping, got a list"]
    assert problems(MINIMAL + "cors:\n  allow_origins: https://a.com\n") == [
        "proxy.yaml: cors.allow_origins: expected a list, got a string"]
