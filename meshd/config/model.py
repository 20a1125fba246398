"""The agent configuration as typed, frozen dataclasses.

The class tree *is* the schema: every field a configuration file may set
carries its parser and merge rule in ``dataclasses.field`` metadata (see
``key``), field names are Consul's key names, and nested dataclasses are the
nested objects (``ports``, ``tls.defaults``, ``acl.tokens``). Keys Consul
accepts that meshd ignores (gossip encryption, watches) are listed per class
in ``EXTRA_KEYS``.

Durations are floats in seconds. Tokens are excluded from ``repr`` and from
``to_public_dict``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshd.config.addresses import (
    JoinAddress,
    client_addrs,
    ip_address,
    is_unspecified,
    join_list,
    recursor_list,
)
from meshd.config.services import check_definition, service_definition
from meshd.config.values import (
    Invalid,
    Parser,
    boolean,
    choice,
    duration,
    integer,
    list_of,
    map_of,
    node_meta,
    obj,
    pattern,
    port,
    secret,
    shown,
    string,
)

__all__ = [
    "ACLConfig",
    "ACLTokens",
    "AgentConfig",
    "CAConfig",
    "ConnectConfig",
    "DNSConfig",
    "Extra",
    "InternalRPCTLS",
    "JoinAddress",
    "LimitsConfig",
    "PerformanceConfig",
    "Ports",
    "TLSConfig",
    "TLSSettings",
    "TelemetryConfig",
    "TracingConfig",
    "UIConfig",
]

MergeRule = Literal["replace", "append", "update"]
HOUR = 3600.0


def key(
    default: Any = None,
    parse: Parser = boolean,
    *,
    merge: MergeRule = "replace",
    factory: Any = None,
    duration_value: bool = False,
    show: bool = True,
) -> Any:
    """A field a configuration file may set: its default, parser and merge rule.

    Merge rules follow Consul's: scalars are replaced by later sources, lists
    are appended to, maps (``node_meta``) are updated key by key.
    """
    meta = {"parse": parse, "merge": merge, "duration": duration_value}
    if factory is not None:
        return field(default_factory=factory, repr=show, metadata=meta)
    return field(default=default, repr=show, metadata=meta)


def dur(default: float, *, positive: bool = False) -> Any:
    """A duration field (seconds), written as a Go duration string in files."""
    return key(default, duration(positive=positive), duration_value=True)


def token() -> Any:
    """A secret token: never in ``repr`` nor in the public view."""
    return field(
        default=None, repr=False, metadata={"parse": secret, "merge": "replace", "secret": True}
    )


@dataclass(frozen=True)
class Extra:
    """A key accepted besides the fields: folded into ``target`` or ignored with ``warning``."""

    parse: Parser
    target: str | None = None
    warning: str | None = None


def _uuid(value: object) -> str:
    text = str(string(max_len=64)(value))
    if not re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", text):
        raise Invalid(
            f"must be a UUID such as 9f2e1c1a-5b6d-4c8e-9a0b-1c2d3e4f5a6b, got {shown(text)}"
        )
    return text.lower()


def _advertise(value: object) -> str:
    address = ip_address(value)
    if is_unspecified(address):
        raise Invalid("must be the address other agents reach this one at, not 0.0.0.0 or ::")
    return address


def _tls_version(value: object) -> str:
    if value in ("TLSv1_0", "TLSv1_1"):
        raise Invalid(f'{value} is not supported; use "TLSv1_2" or "TLSv1_3"')
    return str(choice("TLSv1_2", "TLSv1_3")(value))


def _ca_provider(value: object) -> str:
    if value != "consul":
        raise Invalid(f'only the built-in "consul" CA provider is supported, got {shown(value)}')
    return "consul"


_DC = pattern(
    r"[a-z0-9_\-]+", "must contain only lowercase letters, digits, '-' and '_'", lower=True
)
_DOMAIN_RULE = "must be a DNS name (letters, digits and '-', labels of 1 to 63 characters)"
_LABEL = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?")


def _domain(value: object) -> str:
    # Stored without the trailing dot: "consul." and "consul" are the same domain.
    text = str(string(max_len=254)(value)).lower().removesuffix(".")
    if not all(_LABEL.fullmatch(label) for label in text.split(".")):
        raise Invalid(f"{_DOMAIN_RULE}, got {shown(value)}")
    return text


_POLICY = choice("allow", "deny")
_optional_path = string()


@dataclass(frozen=True)
class Ports:
    """``ports``: listener ports; -1 disables a listener where Consul allows it."""

    http: int = key(8500, port(disable=True))
    https: int = key(-1, port(disable=True))
    dns: int = key(8600, port(disable=True))
    server: int = key(8300, port(disable=False))
    grpc: int = key(-1, port(disable=True))
    sidecar_min_port: int = key(21000, port(disable=False))
    sidecar_max_port: int = key(21255, port(disable=False))

    EXTRA_KEYS: ClassVar[Mapping[str, Extra]] = {
        name: Extra(port(disable=True), warning="ignored: meshd has no gossip (Serf) layer")
        for name in ("serf_lan", "serf_wan")
    }


@dataclass(frozen=True)
class TLSSettings:
    """``tls.defaults`` (and, resolved against it, ``tls.https``)."""

    ca_file: str | None = key(None, _optional_path)
    ca_path: str | None = key(None, _optional_path)
    cert_file: str | None = key(None, _optional_path)
    key_file: str | None = key(None, _optional_path)
    verify_incoming: bool = key(False, boolean)
    verify_outgoing: bool = key(False, boolean)
    tls_min_version: str = key("TLSv1_2", _tls_version)


@dataclass(frozen=True)
class InternalRPCTLS(TLSSettings):
    """``tls.internal_rpc``: server RPC; unset keys inherit ``tls.defaults``."""

    verify_server_hostname: bool = key(False, boolean)


@dataclass(frozen=True)
class TLSConfig:
    """``tls``: per-protocol TLS; ``internal_rpc`` and ``https`` inherit ``defaults``."""

    defaults: TLSSettings = field(default_factory=TLSSettings)
    internal_rpc: InternalRPCTLS = field(default_factory=InternalRPCTLS)
    https: TLSSettings = field(default_factory=TLSSettings)

    EXTRA_KEYS: ClassVar[Mapping[str, Extra]] = {
        "auto_encrypt": Extra(obj, warning="ignored: auto_encrypt is not supported by meshd"),
    }


@dataclass(frozen=True)
class ACLTokens:
    """``acl.tokens``: secrets, never shown."""

    initial_management: str | None = token()
    agent: str | None = token()
    default: str | None = token()
    agent_recovery: str | None = token()
    replication: str | None = token()


@dataclass(frozen=True)
class ACLConfig:
    """``acl``: token-based access control (off unless enabled)."""

    enabled: bool = key(False, boolean)
    default_policy: Literal["allow", "deny"] = key("allow", _POLICY)
    down_policy: str = key("extend-cache", choice("allow", "deny", "extend-cache", "async-cache"))
    enable_token_persistence: bool = key(False, boolean)
    token_ttl: float = dur(30.0)
    # Consul's bounds on a token's ExpirationTTL and an auth method's MaxTokenTTL.
    token_min_expiration_ttl: float = dur(60.0, positive=True)
    token_max_expiration_ttl: float = dur(24 * HOUR, positive=True)
    tokens: ACLTokens = field(default_factory=ACLTokens)


@dataclass(frozen=True)
class CAConfig:
    """``connect.ca_config`` for the built-in CA."""

    leaf_cert_ttl: float = dur(72 * HOUR, positive=True)
    private_key_type: Literal["ec", "rsa"] = key("ec", choice("ec", "rsa"))
    private_key_bits: int = key(256, integer(1))  # 2048 when private_key_type is rsa
    root_cert_ttl: float = dur(87600 * HOUR, positive=True)
    intermediate_cert_ttl: float = dur(8760 * HOUR, positive=True)


@dataclass(frozen=True)
class ConnectConfig:
    """``connect``: the service mesh. ``default_intention_policy`` is meshd's own key."""

    enabled: bool = key(True, boolean)
    ca_provider: str = key("consul", _ca_provider)
    ca_config: CAConfig = field(default_factory=CAConfig)
    default_intention_policy: Literal["allow", "deny"] = key("deny", _POLICY)


@dataclass(frozen=True)
class DNSConfig:
    """``dns_config``: the DNS interface."""

    allow_stale: bool = key(True, boolean)
    max_stale: float = dur(87600 * HOUR)
    node_ttl: float = dur(0.0)
    service_ttl: Mapping[str, float] = key(
        parse=map_of(duration(), key=string(max_len=256)),
        merge="update",
        factory=dict,
        duration_value=True,
    )
    enable_truncate: bool = key(False, boolean)
    only_passing: bool = key(False, boolean)
    udp_answer_limit: int = key(3, integer(1))
    recursor_timeout: float = dur(2.0, positive=True)


@dataclass(frozen=True)
class PerformanceConfig:
    """``performance``: raft_multiplier scales Raft's timeouts (1 fastest, 10 slowest)."""

    raft_multiplier: int = key(5, integer(1, 10))
    leave_drain_time: float = dur(5.0)
    rpc_hold_timeout: float = dur(7.0)


@dataclass(frozen=True)
class LimitsConfig:
    """``limits``: connection caps (0 = unlimited) and request sizes.

    ``http_max_conns`` (meshd's own; Consul has no total cap) bounds the HTTP
    API's open connections; the agent also keeps it to at most half of the
    process's RLIMIT_NOFILE. The server RPC port closes a connection over
    ``rpc_max_conns_per_client`` (per client IP, Consul's default 100) or
    ``rpc_max_conns`` (meshd's, in all), and one whose started frame is not
    complete within ``rpc_frame_timeout``.
    """

    http_max_conns_per_client: int = key(200, integer(0))
    http_max_conns: int = key(4096, integer(0))
    rpc_max_conns_per_client: int = key(100, integer(0))
    # meshd's: connections a server's RPC port holds in all (0 = unlimited),
    # and how long a started RPC frame may take to arrive in full.
    rpc_max_conns: int = key(4096, integer(0))
    rpc_frame_timeout: float = dur(30.0, positive=True)
    txn_max_req_len: int = key(512 * 1024, integer(1))
    kv_max_value_size: int = key(512 * 1024, integer(1))


@dataclass(frozen=True)
class TelemetryConfig:
    """``telemetry``: Prometheus metrics."""

    disable_hostname: bool = key(False, boolean)
    prometheus_retention_time: float = dur(0.0)
    metrics_prefix: str = key(
        "meshd", pattern(r"[A-Za-z_][A-Za-z0-9_.]*", "must be a metric name prefix")
    )


def _collector_url(value: object) -> str:
    text = str(string(max_len=512, empty=True)(value))
    if text and not re.fullmatch(r"http://[^/\s:]+(:\d{1,5})?(/\S*)?", text):
        raise Invalid(f"must be an http://host:port URL of a collector, got {shown(text)}")
    return text


@dataclass(frozen=True)
class TracingConfig:
    """``tracing`` (meshd's): where this agent exports its proxies' spans, and
    how many recent spans it keeps for ``/v1/internal/traces``.

    ``otlp_endpoint`` gets ``POST <endpoint>/v1/traces`` (``otlp_encoding``
    protobuf or json), ``zipkin_endpoint`` ``POST <endpoint>/api/v2/spans``;
    empty = no export. ``export_queue`` bounds each exporter's buffer (spans
    beyond it are dropped and counted).
    """

    otlp_endpoint: str = key("", _collector_url)
    otlp_encoding: str = key("protobuf", choice("protobuf", "json"))
    zipkin_endpoint: str = key("", _collector_url)
    export_queue: int = key(2048, integer(1, 1_000_000))
    store_max_spans: int = key(10_000, integer(1, 1_000_000))
    store_max_traces: int = key(1_000, integer(1, 100_000))


@dataclass(frozen=True)
class UIConfig:
    """``ui_config``."""

    enabled: bool = key(False, boolean)


def _one(parser: Parser) -> Parser:
    # A list too: an HCL file may repeat the block (service { } service { }).
    many = list_of(parser)
    return lambda value: many(value) if isinstance(value, list) else (parser(value),)


_NO_GOSSIP = "ignored: meshd has no gossip layer to encrypt"


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent configuration, as ``load_config`` returns it.

    ``node_name``, ``primary_datacenter``, ``advertise_addr``,
    ``leave_on_terminate`` and ``skip_leave_on_interrupt`` are derived by
    ``load_config`` when not set; ``data_dir`` None means in-memory (dev).
    """

    datacenter: str = key("dc1", _DC)
    primary_datacenter: str = key("", _DC)
    node_name: str = key("", string(max_len=128))
    node_id: str | None = key(None, _uuid)
    data_dir: str | None = key(None, _optional_path)
    dev: bool = field(default=False, metadata={"derived": True})
    server: bool = key(False, boolean)
    bootstrap: bool = key(False, boolean)
    bootstrap_expect: int = key(0, integer(0))
    retry_join: tuple[JoinAddress, ...] = key((), join_list, merge="append")
    retry_interval: float = dur(30.0, positive=True)
    retry_max: int = key(0, integer(0))
    start_join: tuple[JoinAddress, ...] = key((), join_list, merge="append")
    bind_addr: str = key("0.0.0.0", ip_address)
    advertise_addr: str = key("", _advertise)
    client_addr: tuple[str, ...] = key(("127.0.0.1",), client_addrs)
    ports: Ports = field(default_factory=Ports)
    domain: str = key("consul", _domain)
    log_level: str = key(
        "INFO",
        choice(
            "TRACE",
            "DEBUG",
            "INFO",
            "WARN",
            "ERR",
            fold=True,
            aliases={"WARNING": "WARN", "ERROR": "ERR"},
        ),
    )
    log_json: bool = key(False, boolean)
    enable_script_checks: bool = key(False, boolean)
    enable_local_script_checks: bool = key(False, boolean)
    disable_remote_exec: bool = key(True, boolean)
    leave_on_terminate: bool = key(False, boolean)
    skip_leave_on_interrupt: bool = key(False, boolean)
    tls: TLSConfig = field(default_factory=TLSConfig)
    acl: ACLConfig = field(default_factory=ACLConfig)
    connect: ConnectConfig = field(default_factory=ConnectConfig)
    dns_config: DNSConfig = field(default_factory=DNSConfig)
    recursors: tuple[str, ...] = key((), recursor_list, merge="append")
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    raft_snapshot_threshold: int = key(16384, integer(1))
    raft_trailing_logs: int = key(10240, integer(0))
    raft_snapshot_interval: float = dur(30.0, positive=True)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    node_meta: Mapping[str, str] = key(parse=node_meta, merge="update", factory=dict)
    ui_config: UIConfig = field(default_factory=UIConfig)
    # Not in repr: definitions may carry tokens and check headers.
    services: tuple[Mapping[str, Any], ...] = key(
        (), list_of(service_definition), merge="append", show=False
    )
    checks: tuple[Mapping[str, Any], ...] = key(
        (), list_of(check_definition), merge="append", show=False
    )

    EXTRA_KEYS: ClassVar[Mapping[str, Extra]] = {
        "service": Extra(_one(service_definition), target="services"),
        "check": Extra(_one(check_definition), target="checks"),
        "watches": Extra(list_of(obj), warning="ignored: watches are not supported by meshd"),
        "encrypt": Extra(secret, warning=_NO_GOSSIP),
        "encrypt_verify_incoming": Extra(boolean, warning=_NO_GOSSIP),
        "encrypt_verify_outgoing": Extra(boolean, warning=_NO_GOSSIP),
    }

    def to_public_dict(self) -> dict[str, Any]:
        """The configuration for ``/v1/agent/self``: ``Config`` and ``DebugConfig``.

        Tokens are shown as ``"hidden"`` when set (as Consul's sanitised
        DebugConfig does); file paths are shown, file contents never read.
        """
        from meshd.config.public import public_dict

        return public_dict(self)
