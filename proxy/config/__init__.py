"""Configuration: YAML -> frozen dataclasses, validated once (see `load.py`)."""

from proxy.config.load import (
    SIMULATOR_ENDPOINT,
    ClientConfig,
    Config,
    ConfigError,
    CorsConfig,
    FailoverConfig,
    LimitsConfig,
    ListenConfig,
    MetricsConfig,
    ShutdownConfig,
    SimulatorCapacity,
    TimeoutsConfig,
    UpstreamConfig,
    load_config,
    parse_config,
)

__all__ = ["SIMULATOR_ENDPOINT", "ClientConfig", "Config", "ConfigError", "CorsConfig",
           "FailoverConfig", "LimitsConfig", "ListenConfig", "MetricsConfig", "ShutdownConfig",
           "SimulatorCapacity", "TimeoutsConfig", "UpstreamConfig", "load_config",
           "parse_config"]
