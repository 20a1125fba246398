"""``service-defaults`` and ``proxy-defaults`` config entries.

Follows Consul's ServiceConfigEntry / ProxyConfigEntry
(agent/structs/config_entry.go) and, for fault injection, the shape of the
``builtin/fault-injection`` Envoy extension (Consul Enterprise 1.18,
https://developer.hashicorp.com/consul/docs/troubleshoot/fault-injection):
``Arguments.Config.{Delay{Duration ms, Percentage}, Abort{HttpStatus |
GrpcStatus, Percentage}, Bandwidth{Limit KiB/s, Percentage}}``.

Fields meshd does not act on (Mode, TransparentProxy, MeshGateway, Expose,
...) are accepted and kept as given so /v1/config answers with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connect.l7.access_logs import normalize_access_logs
from connect.l7.decode import (
    JSON,
    Fields,
    ValidationError,
    check_meta,
    finish_entry,
    format_duration,
    goq,
    put,
    put_entry_tail,
)

SERVICE_DEFAULTS = "service-defaults"
PROXY_DEFAULTS = "proxy-defaults"
DEFAULT_PROTOCOL = "tcp"
FAULT_INJECTION = "builtin/fault-injection"

_SD_PASSTHROUGH = (
    "TracingSamplingPercentage",  # meshd's: see check_sampling
    "Mode",
    "TransparentProxy",
    "MutualTLSMode",
    "MeshGateway",
    "Expose",
    "ExternalSNI",
    "Destination",
    "BalanceInboundConnections",
    "RateLimits",
    "LocalIdleTimeoutMs",
    "AccessLogs",  # meshd: the service's own access-log switch (access_logs.py)
)
_PD_PASSTHROUGH = (
    "Mode",
    "TransparentProxy",
    "MutualTLSMode",
    "MeshGateway",
    "Expose",
    "AccessLogs",
    "FailoverPolicy",
    "PrioritizeByLocality",
)


@dataclass(frozen=True)
class Limits:
    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_concurrent_requests: int | None = None

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        for key, value in (
            ("MaxConnections", self.max_connections),
            ("MaxPendingRequests", self.max_pending_requests),
            ("MaxConcurrentRequests", self.max_concurrent_requests),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class PassiveHealthCheck:
    interval_ns: int = 0
    max_failures: int = 0
    enforcing_consecutive_5xx: int | None = None
    max_ejection_percent: int | None = None
    base_ejection_time_ns: int | None = None

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        if self.interval_ns:
            out["Interval"] = format_duration(self.interval_ns)
        put(out, "MaxFailures", self.max_failures)
        if self.enforcing_consecutive_5xx is not None:
            out["EnforcingConsecutive5xx"] = self.enforcing_consecutive_5xx
        if self.max_ejection_percent is not None:
            out["MaxEjectionPercent"] = self.max_ejection_percent
        if self.base_ejection_time_ns is not None:
            out["BaseEjectionTime"] = format_duration(self.base_ejection_time_ns)
        return out


@dataclass(frozen=True)
class UpstreamConfig:
    name: str = ""
    namespace: str = ""
    partition: str = ""
    peer: str = ""
    protocol: str = ""
    connect_timeout_ms: int = 0
    limits: Limits | None = None
    passive_health_check: PassiveHealthCheck | None = None
    balance_outbound_connections: str = ""
    extra: dict[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put(out, "Name", self.name)
        put(out, "Namespace", self.namespace)
        put(out, "Partition", self.partition)
        put(out, "Peer", self.peer)
        put(out, "Protocol", self.protocol)
        put(out, "ConnectTimeoutMs", self.connect_timeout_ms)
        if self.limits is not None:
            out["Limits"] = self.limits.to_json()
        if self.passive_health_check is not None:
            out["PassiveHealthCheck"] = self.passive_health_check.to_json()
        put(out, "BalanceOutboundConnections", self.balance_outbound_connections)
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class FaultInjection:
    """Parsed ``builtin/fault-injection`` Arguments.Config; percentages 0-100."""

    delay_ms: int | None = None
    delay_percentage: float = 0.0
    abort_http_status: int | None = None
    abort_grpc_status: int | None = None
    abort_percentage: float = 0.0
    bandwidth_kib_s: int | None = None
    bandwidth_percentage: float = 0.0


@dataclass(frozen=True)
class EnvoyExtension:
    name: str
    required: bool = False
    arguments: dict[str, JSON] = field(default_factory=dict)
    consul_version: str = ""
    envoy_version: str = ""
    fault_injection: FaultInjection | None = None

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Name": self.name}
        put(out, "Required", self.required)
        put(out, "Arguments", self.arguments)
        put(out, "ConsulVersion", self.consul_version)
        put(out, "EnvoyVersion", self.envoy_version)
        return out


def _nonneg(f: Fields, name: str, text: str) -> int | None:
    value = f.int(name)
    if value is not None and value < 0:
        raise ValidationError(f.sub(name), text)
    return value


def _percentage(f: Fields, name: str, text: str) -> int | None:
    value = f.int(name)
    if value is not None and not 0 <= value <= 100:
        raise ValidationError(f.sub(name), text)
    return value


def _parse_limits(f: Fields) -> Limits | None:
    sub = f.obj("Limits")
    if sub is None:
        return None
    lim = Limits(
        max_connections=_nonneg(sub, "MaxConnections", "max connections cannot be negative"),
        max_pending_requests=_nonneg(
            sub, "MaxPendingRequests", "max pending requests cannot be negative"
        ),
        max_concurrent_requests=_nonneg(
            sub, "MaxConcurrentRequests", "max concurrent requests cannot be negative"
        ),
    )
    sub.finish()
    return lim


def _parse_phc(f: Fields) -> PassiveHealthCheck | None:
    sub = f.obj("PassiveHealthCheck")
    if sub is None:
        return None
    base = sub.raw("BaseEjectionTime")
    phc = PassiveHealthCheck(
        interval_ns=sub.duration("Interval"),
        max_failures=_nonneg(
            sub, "MaxFailures", "passive health check max_failures cannot be negative"
        )
        or 0,
        enforcing_consecutive_5xx=_percentage(
            sub,
            "EnforcingConsecutive5xx",
            "passive health check enforcing_consecutive_5xx must be a percentage between 0 and 100",
        ),
        max_ejection_percent=_percentage(
            sub,
            "MaxEjectionPercent",
            "passive health check max_ejection_percent must be a percentage between 0 and 100",
        ),
        base_ejection_time_ns=None if base is None else sub.duration("BaseEjectionTime"),
    )
    sub.finish()
    if phc.interval_ns < 0:
        raise ValidationError(
            sub.sub("Interval"), "passive health check interval cannot be negative"
        )
    if phc.base_ejection_time_ns is not None and phc.base_ejection_time_ns < 0:
        raise ValidationError(
            sub.sub("BaseEjectionTime"),
            "passive health check base_ejection_time cannot be negative",
        )
    return phc


def _parse_upstream(raw: JSON, path: str) -> UpstreamConfig:
    f = Fields(raw, path)
    cfg = UpstreamConfig(
        name=f.str("Name"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
        peer=f.str("Peer"),
        protocol=f.str("Protocol").lower(),
        # Consul's normalize turns a negative ConnectTimeoutMs into 0 (the default).
        connect_timeout_ms=max(f.int("ConnectTimeoutMs") or 0, 0),
        limits=_parse_limits(f),
        passive_health_check=_parse_phc(f),
        balance_outbound_connections=f.str("BalanceOutboundConnections"),
    )
    extra = f.finish(("MeshGateway", "EnvoyListenerJSON", "EnvoyClusterJSON"))
    if cfg.balance_outbound_connections not in ("", "exact_balance"):
        raise ValidationError(
            f.sub("BalanceOutboundConnections"),
            f"invalid value for balance_outbound_connections: {cfg.balance_outbound_connections}",
        )
    return UpstreamConfig(**{**cfg.__dict__, "extra": extra})


def _parse_upstream_config(
    f: Fields,
) -> tuple[UpstreamConfig | None, tuple[UpstreamConfig, ...], bool]:
    sub = f.obj("UpstreamConfig")
    if sub is None:
        return None, (), False
    raw_defaults = sub.raw("Defaults")
    try:
        defaults = (
            None if raw_defaults is None else _parse_upstream(raw_defaults, sub.sub("Defaults"))
        )
    except ValidationError as exc:
        raise ValidationError(exc.field, f"error in upstream defaults: {exc.message}") from None
    if defaults is not None:
        for attr, label in (
            ("name", "Name"),
            ("namespace", "Namespace"),
            ("partition", "Partition"),
        ):
            if getattr(defaults, attr):
                raise ValidationError(
                    sub.sub(f"Defaults.{label}"),
                    f"error in upstream defaults: {label} must be empty",
                )
    overrides = []
    for i, raw in enumerate(sub.list("Overrides")):
        path = f"{sub.sub('Overrides')}[{i}]"
        name = raw.get("Name", raw.get("name", "")) if isinstance(raw, dict) else ""
        try:
            ov = _parse_upstream(raw, path)
            if not ov.name:
                raise ValidationError(path + ".Name", "Name is required")
            if ov.name == "*":
                raise ValidationError(path + ".Name", "Wildcard name is not supported")
        except ValidationError as exc:
            raise ValidationError(
                exc.field, f"error in upstream override for {name}: {exc.message}"
            ) from None
        overrides.append(ov)
    sub.finish()
    return defaults, tuple(overrides), True


def _parse_fault_injection(args: dict[str, JSON], path: str) -> FaultInjection:
    f = Fields(args, path)
    cfg = f.obj("Config")
    f.finish()
    if cfg is None:
        raise ValidationError(f.sub("Config"), f"{path}: Config is required")
    out: dict[str, JSON] = {}
    pct_text = "Percentage must be between 0 and 100"
    for block, fields in (
        ("Delay", (("Duration", "delay_ms"),)),
        ("Abort", (("HttpStatus", "abort_http_status"), ("GrpcStatus", "abort_grpc_status"))),
        ("Bandwidth", (("Limit", "bandwidth_kib_s"),)),
    ):
        sub = cfg.obj(block)
        if sub is None:
            continue
        for key, attr in fields:
            out[attr] = _nonneg(sub, key, f"{sub.sub(key)} cannot be negative")
        pct = sub.float("Percentage") or 0.0
        if not 0 <= pct <= 100:
            raise ValidationError(sub.sub("Percentage"), f"{sub.sub('Percentage')}: {pct_text}")
        out[f"{block.lower()}_percentage"] = pct
        sub.finish()
    cfg.finish()
    fi = FaultInjection(**out)
    if fi.abort_http_status is not None and fi.abort_grpc_status is not None:
        raise ValidationError(
            cfg.sub("Abort"), f"{cfg.sub('Abort')}: only one of HttpStatus or GrpcStatus may be set"
        )
    if fi.abort_http_status is not None and not 200 <= fi.abort_http_status <= 599:
        raise ValidationError(
            cfg.sub("Abort.HttpStatus"),
            f"{cfg.sub('Abort.HttpStatus')} must be an HTTP status between 200 and 599",
        )
    return fi


def parse_envoy_extensions(f: Fields) -> tuple[EnvoyExtension, ...]:
    out = []
    for i, raw in enumerate(f.list("EnvoyExtensions")):
        sub = Fields(raw, f"EnvoyExtensions[{i}]")
        ext = EnvoyExtension(
            name=sub.str("Name"),
            required=sub.bool("Required"),
            arguments=sub.any_map("Arguments"),
            consul_version=sub.str("ConsulVersion"),
            envoy_version=sub.str("EnvoyVersion"),
        )
        sub.finish()
        if not ext.name:
            raise ValidationError(
                sub.sub("Name"), f"invalid EnvoyExtensions[{i}]: Name is required"
            )
        if ext.name == FAULT_INJECTION:
            fi = _parse_fault_injection(ext.arguments, sub.sub("Arguments"))
            ext = EnvoyExtension(**{**ext.__dict__, "fault_injection": fi})
        out.append(ext)
    return tuple(out)


SAMPLING_KEY = "tracing_sampling_percentage"  # proxy-defaults Config (meshd's)


def check_sampling(value: JSON, field_name: str) -> None:
    """A trace sampling percentage: a number from 0 to 100 with a 0.01 resolution
    (Istio's ``randomSamplingPercentage``); None (unset) passes."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ValidationError(field_name, f"{field_name} must be a number between 0 and 100")
    if abs(round(value * 100) - value * 100) > 1e-6:
        raise ValidationError(field_name, f"{field_name} has a resolution of 0.01")


@dataclass(frozen=True)
class ServiceDefaultsEntry:
    name: str
    protocol: str = ""
    upstream_defaults: UpstreamConfig | None = None
    upstream_overrides: tuple[UpstreamConfig, ...] = ()
    has_upstream_config: bool = False
    local_connect_timeout_ms: int = 0
    local_request_timeout_ms: int = 0
    max_inbound_connections: int = 0
    envoy_extensions: tuple[EnvoyExtension, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    partition: str = ""
    extra: dict[str, JSON] = field(default_factory=dict)
    kind: str = SERVICE_DEFAULTS

    def upstream_config_for(self, upstream: str) -> UpstreamConfig | None:
        """The override for ``upstream`` if any, else the defaults."""
        for ov in self.upstream_overrides:
            if ov.name == upstream:
                return ov
        return self.upstream_defaults

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Kind": self.kind, "Name": self.name}
        put(out, "Protocol", self.protocol)
        if self.has_upstream_config:
            uc: dict[str, JSON] = {}
            put(uc, "Overrides", [o.to_json() for o in self.upstream_overrides])
            if self.upstream_defaults is not None:
                uc["Defaults"] = self.upstream_defaults.to_json()
            out["UpstreamConfig"] = uc
        put(out, "LocalConnectTimeoutMs", self.local_connect_timeout_ms)
        put(out, "LocalRequestTimeoutMs", self.local_request_timeout_ms)
        put(out, "MaxInboundConnections", self.max_inbound_connections)
        put(out, "EnvoyExtensions", [e.to_json() for e in self.envoy_extensions])
        return put_entry_tail(out, self.meta, self.namespace, self.partition, self.extra)


def parse_service_defaults(f: Fields) -> ServiceDefaultsEntry:
    """Decode and validate a ``service-defaults`` entry (Kind already read)."""
    name = f.str("Name")
    defaults, overrides, has_uc = _parse_upstream_config(f)
    entry = ServiceDefaultsEntry(
        name=name,
        protocol=f.str("Protocol").lower(),
        upstream_defaults=defaults,
        upstream_overrides=overrides,
        has_upstream_config=has_uc,
        local_connect_timeout_ms=_nonneg(
            f, "LocalConnectTimeoutMs", "LocalConnectTimeoutMs cannot be negative"
        )
        or 0,
        local_request_timeout_ms=_nonneg(
            f, "LocalRequestTimeoutMs", "LocalRequestTimeoutMs cannot be negative"
        )
        or 0,
        max_inbound_connections=_nonneg(
            f, "MaxInboundConnections", "invalid value for max_inbound_connections"
        )
        or 0,
        envoy_extensions=parse_envoy_extensions(f),
        meta=f.str_map("Meta"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
    )
    extra = finish_entry(f, _SD_PASSTHROUGH)
    normalize_access_logs(extra)
    if not name:
        raise ValidationError("Name", "Name is required")
    if name == "*":
        raise ValidationError(
            "Name", "service-defaults name must be the name of a service, and not a wildcard"
        )
    check_meta(entry.meta)
    check_sampling(extra.get("TracingSamplingPercentage"), "TracingSamplingPercentage")
    bic = extra.get("BalanceInboundConnections", "")
    if bic not in ("", "exact_balance"):
        raise ValidationError(
            "BalanceInboundConnections", f"invalid value for balance_inbound_connections: {bic}"
        )
    if has_uc and "Destination" in extra:
        raise ValidationError(
            "UpstreamConfig",
            "UpstreamConfig and Destination are mutually exclusive for service defaults",
        )
    check_meta(entry.meta)
    return ServiceDefaultsEntry(**{**entry.__dict__, "extra": extra})


@dataclass(frozen=True)
class ProxyDefaultsEntry:
    name: str = "global"
    config: dict[str, JSON] = field(default_factory=dict)
    envoy_extensions: tuple[EnvoyExtension, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    partition: str = ""
    extra: dict[str, JSON] = field(default_factory=dict)
    kind: str = PROXY_DEFAULTS

    @property
    def protocol(self) -> str:
        """``Config.protocol`` lower-cased, "" when unset."""
        value = self.config.get("protocol", "")
        return value.lower() if isinstance(value, str) else ""

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Kind": self.kind, "Name": self.name}
        put(out, "Config", dict(self.config))
        put(out, "EnvoyExtensions", [e.to_json() for e in self.envoy_extensions])
        return put_entry_tail(out, self.meta, self.namespace, self.partition, self.extra)


_PD_INT_KEYS = (
    "local_connect_timeout_ms",
    "local_request_timeout_ms",
    "local_idle_timeout_ms",
    "max_inbound_connections",
)


def parse_proxy_defaults(f: Fields) -> ProxyDefaultsEntry:
    """Decode and validate a ``proxy-defaults`` entry (Kind already read)."""
    name = f.str("Name")
    entry = ProxyDefaultsEntry(
        name=name,
        config=f.any_map("Config"),
        envoy_extensions=parse_envoy_extensions(f),
        meta=f.str_map("Meta"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
    )
    extra = finish_entry(f, _PD_PASSTHROUGH)
    normalize_access_logs(extra)
    if name not in ("", "global"):
        raise ValidationError("Name", f'invalid name ({goq(name)}), only "global" is supported')
    entry = ProxyDefaultsEntry(**{**entry.__dict__, "name": "global"})
    proto = entry.config.get("protocol")
    if proto is not None and not isinstance(proto, str):
        raise ValidationError("Config.protocol", "Config.protocol must be a string")
    check_sampling(entry.config.get(SAMPLING_KEY), f"Config.{SAMPLING_KEY}")
    for key in _PD_INT_KEYS:
        value = entry.config.get(key)
        # mapstructure's weak decoding also takes "5000" for an int.
        if isinstance(value, str) and value.isdigit():
            continue
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValidationError(f"Config.{key}", f"Config.{key} must be a non-negative integer")
    check_meta(entry.meta)
    return ProxyDefaultsEntry(**{**entry.__dict__, "extra": extra})
