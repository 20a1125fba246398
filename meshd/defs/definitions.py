"""Service and check definitions as agents receive them.

The same definitions arrive from ``/v1/agent/service/register`` (Consul's
CamelCase JSON) and from configuration files (snake_case). Go's JSON decoder
matches field names case-insensitively and Consul translates snake_case, so
both are normalised here to one canonical spelling before validation. Bad
input raises ``registry.errors.ValidationError`` naming the field (HTTP 400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from registry import validation as v
from registry.errors import ValidationError
from registry.records import HealthCheck, ServiceInstance, Weights

from ..durations import format_duration, parse_duration
from ..errors import DurationError
from .field_rules import (
    CHECK_RULES,
    NAME_MAX,
    SERVICE_RULES,
    boolean,
    check_fields,
    check_proxy,
    integer,
    normalise_nested,
)
from .field_rules import (
    obj as object_rule,
)
from .json_bounds import check_json_value

SERVICE_FIELDS = [
    "ID",
    "Name",
    "Tags",
    "Address",
    "Port",
    "Meta",
    "Kind",
    "Proxy",
    "Connect",
    "Weights",
    "EnableTagOverride",
    "TaggedAddresses",
    "Check",
    "Checks",
    "Token",
    "Namespace",
    "Partition",
    "SocketPath",
    "LocallyRegisteredAsSidecar",
    "Locality",
]
CHECK_FIELDS = [
    "ID",
    "CheckID",
    "Name",
    "Notes",
    "Status",
    "ServiceID",
    "TTL",
    "HTTP",
    "Header",
    "Method",
    "Body",
    "TCP",
    "UDP",
    "GRPC",
    "GRPCUseTLS",
    "Args",
    "ScriptArgs",
    "Shell",
    "DockerContainerID",
    "AliasNode",
    "AliasService",
    "Interval",
    "Timeout",
    "DeregisterCriticalServiceAfter",
    "SuccessBeforePassing",
    "FailuresBeforeWarning",
    "FailuresBeforeCritical",
    "TLSSkipVerify",
    "TLSServerName",
    "OutputMaxSize",
    "H2PING",
    "Namespace",
    "Partition",
    "Definition",
    "Type",
    "CheckType",
]
_CANON_SERVICE = {k.lower(): k for k in SERVICE_FIELDS}
_CANON_CHECK = {k.lower(): k for k in CHECK_FIELDS}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
STATUSES = ("passing", "warning", "critical", "maintenance")


def _canon(obj: Mapping[str, Any], table: Mapping[str, str], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValidationError(prefix or "body", "keys must be strings")
        canon = table.get(key.replace("_", "").lower())
        if canon is None:
            raise ValidationError(f"{prefix}{key}", "unknown field")
        out[canon] = value
    return out


def _str(d: Mapping[str, Any], key: str, prefix: str, default: str = "") -> str:
    v = d.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise ValidationError(prefix + key, f"must be a string, got {type(v).__name__}")
    return v


def _str_map(d: Mapping[str, Any], key: str, prefix: str) -> dict[str, str]:
    v = d.get(key) or {}
    if not isinstance(v, Mapping) or not all(
        isinstance(k, str) and isinstance(x, str) for k, x in v.items()
    ):
        raise ValidationError(prefix + key, "must be an object of string values")
    return dict(v)


def _duration(d: Mapping[str, Any], key: str, prefix: str) -> str:
    """A duration given as a Go duration string or, as Consul also accepts,
    as integer nanoseconds (stored back into ``d`` as the string Consul shows)."""
    value = d.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValidationError(prefix + key, f"invalid duration {value}: negative")
        text = format_duration(value / 1_000_000_000)
        if isinstance(d, dict):
            d[key] = text
        return text
    text = _str(d, key, prefix)
    if text:
        try:
            parse_duration(text)
        except DurationError as exc:
            raise ValidationError(
                prefix + key, f"invalid duration {text!r}: {exc.reason}"
            ) from None
    return text


@dataclass(frozen=True)
class CheckDefinition:
    """A check as the agent runs it: the registry record plus how to run it."""

    check: HealthCheck
    kind: str  # ttl, http, tcp, udp, script, grpc, alias, h2ping
    spec: dict[str, Any] = field(default_factory=dict)  # the canonical definition


def check_kind(spec: Mapping[str, Any]) -> str:
    for key, kind in (
        ("TTL", "ttl"),
        ("HTTP", "http"),
        ("TCP", "tcp"),
        ("UDP", "udp"),
        ("GRPC", "grpc"),
        ("H2PING", "h2ping"),
        ("Args", "script"),
        ("ScriptArgs", "script"),
        ("AliasService", "alias"),
        ("AliasNode", "alias"),
    ):
        if spec.get(key):
            return kind
    return ""


def parse_check(
    obj: Any, *, node: str, service: ServiceInstance | None = None, prefix: str = "", index: int = 0
) -> CheckDefinition:
    """A check definition (standalone, or in a service's Check/Checks)."""
    if not isinstance(obj, Mapping):
        raise ValidationError(prefix.rstrip(".") or "Check", "must be an object")
    if not prefix:
        check_json_value(obj, "")
    spec = _canon(obj, _CANON_CHECK, prefix)
    check_fields(spec, CHECK_RULES, prefix)
    if "ScriptArgs" in spec and "Args" not in spec:
        spec["Args"] = spec.pop("ScriptArgs")
    kind = check_kind(spec)
    if not kind:
        raise ValidationError(
            prefix + "Check",
            "must define one of TTL, HTTP, TCP, UDP, GRPC, H2PING, Args or AliasService/Node",
        )
    for key in ("Interval", "Timeout", "TTL", "DeregisterCriticalServiceAfter"):
        _duration(spec, key, prefix)
    if kind not in ("ttl", "alias") and not spec.get("Interval"):
        raise ValidationError(prefix + "Interval", f"required for a {kind} check")
    status = _str(spec, "Status", prefix, "critical") or "critical"
    if status not in STATUSES:
        raise ValidationError(prefix + "Status", f"must be one of {', '.join(STATUSES[:3])}")
    service_id = _str(spec, "ServiceID", prefix)
    if service is not None:
        service_id = service.id
    check_id = _str(spec, "CheckID", prefix) or _str(spec, "ID", prefix)
    name = _str(spec, "Name", prefix)
    if not check_id:
        if service is not None:
            check_id = f"service:{service.id}" + (f":{index + 1}" if index else "")
        else:
            check_id = name
    if not check_id:
        raise ValidationError(prefix + "Name", "a check needs a Name or CheckID")
    if not name:
        name = f"Service '{service.service}' check" if service else check_id
    check = HealthCheck(
        check_id=check_id,
        node=node,
        name=name,
        status=status,
        notes=_str(spec, "Notes", prefix),
        service_id=service_id,
        service_name=service.service if service else "",
        service_tags=service.tags if service else (),
        type=kind,
        interval=_str(spec, "Interval", prefix),
        timeout=_str(spec, "Timeout", prefix),
        definition={k: v for k, v in spec.items() if k not in ("Status", "Notes", "Name")},
    )
    return CheckDefinition(check, kind, spec)


@dataclass(frozen=True)
class ServiceDefinition:
    service: ServiceInstance
    checks: tuple[CheckDefinition, ...]
    token: str = ""


def check_service_name(name: str, field_name: str) -> None:
    """Raise ``ValidationError`` naming ``field_name`` unless ``name`` is a
    valid service name (the rule registrations and leaf requests share)."""
    if not name:
        raise ValidationError(field_name, "missing service name")
    if len(name) > NAME_MAX:
        raise ValidationError(field_name, f"too long: {len(name)} characters (max {NAME_MAX})")
    if not _NAME_RE.match(name):
        raise ValidationError(field_name, f"invalid service name {name!r}")


def tagged_addresses(raw: Any, field_name: str = "TaggedAddresses") -> dict[str, Any]:
    """Service tagged addresses as Consul stores them: each value a
    ``{"Address", "Port"}`` object, whatever the case of the keys given
    (Go's JSON decoding matches field names case-insensitively)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValidationError(field_name, "must be an object")
    out: dict[str, Any] = {}
    for tag, value in raw.items():
        where = f"{field_name}.{tag}"
        if isinstance(value, str):  # a bare address, as the registration edge allows
            value = {"Address": value}
        if not isinstance(value, Mapping):
            raise ValidationError(where, "must be an object with Address and Port")
        fields = {str(k).lower(): v for k, v in value.items()}
        address, port = fields.get("address", ""), fields.get("port", 0)
        if not isinstance(address, str):
            raise ValidationError(where + ".Address", "must be a string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValidationError(where + ".Port", "must be an integer between 0 and 65535")
        out[str(tag)] = {"Address": address, "Port": port}
    return out


def _locality(spec: Mapping[str, Any]) -> dict[str, str] | None:
    """Consul's ``Locality`` ({"Region", "Zone"}), or None when not given."""
    raw = spec.get("Locality")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValidationError("Locality", "must be an object with Region and Zone")
    fields = {str(k).lower(): v for k, v in raw.items()}
    unknown = set(fields) - {"region", "zone"}
    if unknown:
        raise ValidationError(f"Locality.{sorted(unknown)[0]}", "unknown field")
    out = {}
    for key in ("Region", "Zone"):
        value = fields.get(key.lower(), "")
        if not isinstance(value, str):
            raise ValidationError(f"Locality.{key}", "must be a string")
        out[key] = value
    return out


def _weights(raw: Any) -> Weights:
    """Consul's ``Weights`` (``{"Passing": 1, "Warning": 1}`` when absent)."""
    spec = _canon(raw or {}, {"passing": "Passing", "warning": "Warning"}, "Weights.")
    check_fields(
        spec, {"Passing": integer(1, 2**31 - 1), "Warning": integer(0, 2**31 - 1)}, "Weights."
    )
    passing = spec.get("Passing")
    warning = spec.get("Warning")
    return Weights(1 if passing is None else passing, 1 if warning is None else warning)


def _connect(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    connect = normalise_nested(raw)
    check_fields(connect, {"Native": boolean, "SidecarService": object_rule}, "Connect.")
    return dict(connect)


def _proxy(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    proxy = normalise_nested(raw)
    check_proxy(proxy, "Proxy.")
    return dict(proxy)


def parse_service(obj: Any, *, node: str) -> ServiceDefinition:
    """A service definition with its checks. Raises ``ValidationError``
    naming the first field whose type, size or value is wrong."""
    if not isinstance(obj, Mapping):
        raise ValidationError("body", "a service definition must be an object")
    check_json_value(obj, "")
    spec = _canon(obj, _CANON_SERVICE, "")
    check_fields(spec, SERVICE_RULES, "")
    name = _str(spec, "Name", "")
    check_service_name(name, "Name")
    sid = _str(spec, "ID", "") or name
    port = spec.get("Port") or 0
    tags = spec.get("Tags") or []
    kind = _str(spec, "Kind", "")
    if kind not in ("", "typical", "connect-proxy", "mesh-gateway", "ingress-gateway"):
        raise ValidationError("Kind", f"unknown service kind {kind!r}")
    for key in ("Namespace", "Partition"):
        if _str(spec, key, "") not in ("", "default"):
            raise ValidationError(key, "only the default namespace/partition exists")
    meta = _str_map(spec, "Meta", "")
    v.meta(meta, "Meta")
    svc = ServiceInstance(
        service=name,
        id=sid,
        node=node,
        kind="" if kind == "typical" else kind,
        tags=tuple(tags),
        address=_str(spec, "Address", ""),
        port=port,
        meta=meta,
        tagged_addresses=tagged_addresses(spec.get("TaggedAddresses")),
        weights=_weights(spec.get("Weights")),
        enable_tag_override=spec.get("EnableTagOverride") is True,
        proxy=_proxy(spec.get("Proxy")),
        connect=_connect(spec.get("Connect")),
        locality=_locality(spec),
    )
    raw_checks: list[Any] = []
    if spec.get("Check"):
        raw_checks.append(spec["Check"])
    raw_checks.extend(spec.get("Checks") or [])
    checks = tuple(
        parse_check(c, node=node, service=svc, prefix=f"Checks[{i}].", index=i)
        for i, c in enumerate(raw_checks)
    )
    return ServiceDefinition(svc, checks, _str(spec, "Token", ""))


def with_status(defn: CheckDefinition, status: str, output: str) -> CheckDefinition:
    return replace(defn, check=replace(defn.check, status=status, output=output))
