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


ROUTED = """
upstreams:
  - name: ptu-eastus
    endpoint: https://a.openai.azure.com
    api_key: ${KEY_A}
    deployments: [gpt-4o]
    priority: 0
    weight: 3
  - name: paygo-sweden
    endpoint: https://b.openai.azure.com
    api_key: ${KEY_B}
    deployments:
      - gpt-4o-mini
      - {name: gpt-4o, deployment: gpt-4o-global}
    priority: 1
failover:
  on_status: [429, 500, 502, 503, 504]
  max_attempts: 3
  cooldown_seconds: 10
  max_cooldown_seconds: 300
"""


def test_routing_keys_of_the_issue_example() -> None:
    config = parse_config(ROUTED, {"KEY_A": "a", "KEY_B": "b"})
    ptu, paygo = config.upstreams
    assert (ptu.priority, ptu.weight, ptu.aliases) == (0, 3.0, ())
    assert (paygo.priority, paygo.weight) == (1, 1.0)
    assert paygo.deployments == ("gpt-4o-mini", "gpt-4o")
    assert paygo.deployment_for("gpt-4o") == "gpt-4o-global"
    assert paygo.deployment_for("gpt-4o-mini") == "gpt-4o-mini"
    assert config.deployments == ("gpt-4o", "gpt-4o-mini")
    assert config.failover.on_status == (429, 500, 502, 503, 504)
    assert (config.failover.max_attempts, config.failover.cooldown_seconds,
            config.failover.max_cooldown_seconds) == (3, 10, 300)
    assert parse_config(MINIMAL, {}).failover == config.failover  # the defaults


def test_routing_key_errors_are_listed_at_once_with_file_and_key() -> None:
    text = """
upstreams:
  - name: a
    endpoint: https://a.openai.azure.com
    priority: first
    weight: 0
    zone: eu
    deployments: [gpt-4o, {name: gpt-4o, deployment: x}, {name: m, model: y}]
  - name: b
    endpoint: https://b.openai.azure.com
    priority: -1
    weight: -2
    simulator: {rpm: 5}
  - name: c
    endpoint: simulator
    priority: 1.5
    simulator: {rpm: 0, burst: 1}
failover:
  on_status: [200, 429]
  max_attempts: 0
  cooldown_seconds: 400
  retries: 2
"""
    found = problems(text)
    expected = [
        "proxy.yaml: upstreams[0].zone: unknown key",
        "proxy.yaml: upstreams[0].deployments[1]: 'gpt-4o' is listed twice",
        "proxy.yaml: upstreams[0].deployments[2].model: unknown key",
        "proxy.yaml: upstreams[0].priority: expected a whole number, got 'first'",
        "proxy.yaml: upstreams[0].weight: expected a number > 0, got 0",
        "proxy.yaml: upstreams[1].simulator: only applies to `endpoint: simulator`",
        "proxy.yaml: upstreams[1].priority: expected a whole number >= 0",
        "proxy.yaml: upstreams[1].weight: expected a number > 0, got -2",
        "proxy.yaml: upstreams[2].simulator.burst: unknown key",
        "proxy.yaml: upstreams[2].simulator.rpm: expected a positive number, got 0",
        "proxy.yaml: upstreams[2].priority: expected a whole number, got 1.5",
        "proxy.yaml: failover.retries: unknown key",
        "proxy.yaml: failover.on_status[0]: expected a 4xx or 5xx status code, got 200",
        "proxy.yaml: failover.max_attempts: expected 1 to 10 attempts, got 0",
        "proxy.yaml: failover.cooldown_seconds: 400 is more than max_cooldown_seconds (300)",
    ]
    for prefix in expected:
        assert any(p.startswith(prefix) for p in found), (prefix, found)
    assert len(found) == len(expected), found


def test_simulator_capacity_from_config() -> None:
    config = parse_config("upstreams:\n  - endpoint: simulator\n    simulator: {rpm: 60, "
                          "tpm: 1000}\n", {})
    capacity = config.upstreams[0].simulator
    assert capacity is not None and (capacity.rpm, capacity.tpm) == (60, 1000)


def test_a_whole_number_key_quotes_a_fraction_and_names_a_list() -> None:
    found = problems("listen:\n  port: 80.5\n" + MINIMAL
                     + "failover:\n  max_attempts: [2]\n")
    assert "proxy.yaml: listen.port: expected a whole number, got 80.5" in found
    assert "proxy.yaml: failover.max_attempts: expected a whole number, got a list" in found
