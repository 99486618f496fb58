"""Configuration: YAML -> frozen dataclasses, validated once.

`model` holds the dataclasses, `load` reads and parses a file, `reader` collects problems,
`validate` converts single values, `sections` and `upstreams` parse their parts of the file
(the routing keys are parsed by `proxy.routing.settings`). Import from here.
"""

from proxy.config.load import load_config, parse_config
from proxy.config.model import (
    SIMULATOR_ENDPOINT,
    ClientConfig,
    Config,
    ConfigError,
    CorsConfig,
    LimitsConfig,
    ListenConfig,
    MetricsConfig,
    ShutdownConfig,
    TimeoutsConfig,
    UpstreamConfig,
)
from proxy.routing.settings import FailoverConfig, SimulatorCapacity

__all__ = ["SIMULATOR_ENDPOINT", "ClientConfig", "Config", "ConfigError", "CorsConfig",
           "FailoverConfig", "LimitsConfig", "ListenConfig", "MetricsConfig", "ShutdownConfig",
           "SimulatorCapacity", "TimeoutsConfig", "UpstreamConfig", "load_config",
           "parse_config"]
