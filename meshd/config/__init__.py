"""The agent configuration: Consul's key names, in HCL, JSON or TOML, merged like Consul.

``load_config(files, dirs, flags, dev=...)`` returns a frozen ``AgentConfig``
and a list of warnings, or raises ``meshd.errors.ConfigError`` naming the
file and dotted key at fault. Modules: ``model`` (the dataclass tree, which is
also the schema), ``values``/``addresses``/``services`` (value parsers),
``sources`` (files, directories, flags), ``aliases`` (deprecated keys),
``schema``/``merge``/``derive``/``validate`` (the pipeline), ``public`` (the
``/v1/agent/self`` view).
"""

from meshd.config.addresses import JoinAddress
from meshd.config.derive import HostInfo, SystemHost
from meshd.config.loader import DEV_DEFAULTS, load_config
from meshd.config.model import (
    ACLConfig,
    ACLTokens,
    AgentConfig,
    CAConfig,
    ConnectConfig,
    DNSConfig,
    InternalRPCTLS,
    LimitsConfig,
    PerformanceConfig,
    Ports,
    TelemetryConfig,
    TLSConfig,
    TLSSettings,
    TracingConfig,
    UIConfig,
)
from meshd.config.sources import FLAGS, MAX_CONFIG_BYTES
from meshd.errors import ConfigError

__all__ = [
    "DEV_DEFAULTS",
    "FLAGS",
    "MAX_CONFIG_BYTES",
    "ACLConfig",
    "ACLTokens",
    "AgentConfig",
    "CAConfig",
    "ConfigError",
    "ConnectConfig",
    "DNSConfig",
    "HostInfo",
    "InternalRPCTLS",
    "JoinAddress",
    "LimitsConfig",
    "PerformanceConfig",
    "Ports",
    "SystemHost",
    "TLSConfig",
    "TLSSettings",
    "TelemetryConfig",
    "TracingConfig",
    "UIConfig",
    "load_config",
]
