"""Type and size rules for the fields of service and check definitions.

Consul decodes a registration into typed Go structs, so ``"Port": "80"``,
``"EnableTagOverride": "false"`` or ``"HTTP": 5`` are refused with 400
before anything is stored; these tables give meshd the same edge. Each rule
checks one field's JSON type and size and raises
``ValidationError(field, reason)``; ``null`` means "not set", as in Go.
Sizes follow Consul where it has a limit (Meta: 64 pairs, keys of 128 and
values of 512 characters) and are generous bounds elsewhere, so one request
cannot make the agent store or ship megabytes per field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from registry.errors import ValidationError

Rule = Callable[[Any, str], None]

NAME_MAX = 256  # a service's or check's name
ID_MAX = 512  # a service's or check's ID (a sidecar's adds "-sidecar-proxy")
TAG_MAX = 512
TAGS_MAX = 256
ADDRESS_MAX = 256  # a host name is at most 253 characters
TEXT_MAX = 4096  # URLs, addresses with ports, tokens, paths, modes
NOTES_MAX = 64 * 1024  # free text: check notes, output, HTTP bodies
LIST_MAX = 256  # checks per service, script args, headers, upstreams
COUNT_MAX = 2**31 - 1


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def string(limit: int = TEXT_MAX) -> Rule:
    def rule(value: Any, field: str) -> None:
        if not isinstance(value, str):
            raise ValidationError(field, f"must be a string, got {_describe(value)}")
        if len(value) > limit:
            raise ValidationError(field, f"too long: {len(value)} characters (max {limit})")

    return rule


def integer(low: int = 0, high: int = COUNT_MAX) -> Rule:
    def rule(value: Any, field: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(field, f"must be an integer, got {_describe(value)}")
        if not low <= value <= high:
            raise ValidationError(field, f"must be between {low} and {high}")

    return rule


def boolean(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        raise ValidationError(field, f"must be a boolean (true or false), got {_describe(value)}")


def obj(value: Any, field: str) -> None:
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be an object, got {_describe(value)}")


def array(value: Any, field: str) -> None:
    if not isinstance(value, list):
        raise ValidationError(field, f"must be an array, got {_describe(value)}")
    if len(value) > LIST_MAX:
        raise ValidationError(field, f"too many items: {len(value)} (max {LIST_MAX})")


def strings(limit: int = TEXT_MAX, count: int = LIST_MAX) -> Rule:
    item = string(limit)

    def rule(value: Any, field: str) -> None:
        if not isinstance(value, list):
            raise ValidationError(field, f"must be an array of strings, got {_describe(value)}")
        if len(value) > count:
            raise ValidationError(field, f"too many items: {len(value)} (max {count})")
        for i, v in enumerate(value):
            item(v, f"{field}[{i}]")

    return rule


def string_map(key_limit: int = NAME_MAX, value_limit: int = TEXT_MAX) -> Rule:
    key_rule, value_rule = string(key_limit), string(value_limit)

    def rule(value: Any, field: str) -> None:
        obj(value, field)
        if len(value) > LIST_MAX:
            raise ValidationError(field, f"too many keys: {len(value)} (max {LIST_MAX})")
        for k, v in value.items():
            key_rule(k, field)
            value_rule(v, f"{field}.{k}")

    return rule


def headers(value: Any, field: str) -> None:
    """An HTTP check's ``Header``: header name to a list of values."""
    obj(value, field)
    if len(value) > LIST_MAX:
        raise ValidationError(field, f"too many headers: {len(value)} (max {LIST_MAX})")
    for k, v in value.items():
        string(NAME_MAX)(k, field)
        strings(TEXT_MAX)(v, f"{field}.{k}")


def tagged_addresses(value: Any, field: str) -> None:
    """``TaggedAddresses``: tag to ``{"Address": str, "Port": int}`` (Consul's
    ServiceAddress); a plain string address is accepted too."""
    obj(value, field)
    if len(value) > LIST_MAX:
        raise ValidationError(field, f"too many keys: {len(value)} (max {LIST_MAX})")
    for tag, addr in value.items():
        string(NAME_MAX)(tag, field)
        where = f"{field}.{tag}"
        if isinstance(addr, str):
            string(ADDRESS_MAX)(addr, where)
            continue
        obj(addr, where)
        for k, v in addr.items():
            canon = str(k).lower()
            if canon == "address":
                string(ADDRESS_MAX)(v, f"{where}.Address")
            elif canon == "port":
                integer(0, 65535)(v, f"{where}.Port")
            else:
                raise ValidationError(f"{where}.{k}", "unknown field")


def check_fields(spec: Mapping[str, Any], rules: Mapping[str, Rule], prefix: str) -> None:
    """Apply ``rules`` to the fields of ``spec`` that are set (not null)."""
    for key, value in spec.items():
        rule = rules.get(key)
        if rule is not None and value is not None:
            rule(value, prefix + key)


# Nested keys arrive in Consul's CamelCase from the API and snake_case from
# configuration files; both are normalised to CamelCase.
_NESTED_KEYS = {
    "sidecar_service": "SidecarService",
    "proxy": "Proxy",
    "upstreams": "Upstreams",
    "destination_name": "DestinationName",
    "destination_type": "DestinationType",
    "destination_namespace": "DestinationNamespace",
    "datacenter": "Datacenter",
    "local_bind_address": "LocalBindAddress",
    "local_bind_port": "LocalBindPort",
    "local_service_address": "LocalServiceAddress",
    "local_service_port": "LocalServicePort",
    "destination_service_name": "DestinationServiceName",
    "destination_service_id": "DestinationServiceID",
    "config": "Config",
    "mode": "Mode",
}
_CAMEL = {v.lower(): v for v in _NESTED_KEYS.values()}
# Free-form maps whose keys are the user's, not field names.
_OPAQUE = frozenset({"Config", "Meta", "meta", "TaggedAddresses", "tagged_addresses"})


def normalise_nested(obj: Any) -> Any:
    """Nested proxy/connect keys in CamelCase (config files spell them snake_case)."""
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            name = _NESTED_KEYS.get(key) or _CAMEL.get(str(key).lower()) or key
            out[name] = value if name in _OPAQUE else normalise_nested(value)
        return out
    if isinstance(obj, list):
        return [normalise_nested(v) for v in obj]
    return obj


SERVICE_RULES: dict[str, Rule] = {
    "ID": string(ID_MAX),
    "Name": string(NAME_MAX),
    "Tags": strings(TAG_MAX, TAGS_MAX),
    "Address": string(ADDRESS_MAX),
    "Port": integer(0, 65535),
    "Meta": string_map(128, 512),
    "Kind": string(64),
    "Proxy": obj,
    "Connect": obj,
    "Weights": obj,
    "EnableTagOverride": boolean,
    "TaggedAddresses": tagged_addresses,
    "Check": obj,
    "Checks": array,
    "Token": string(),
    "Namespace": string(NAME_MAX),
    "Partition": string(NAME_MAX),
    "SocketPath": string(),
    "LocallyRegisteredAsSidecar": boolean,
}


def duration(value: Any, field: str) -> None:
    """A Go duration: a string ("10s") or, as Consul also decodes it, integer
    nanoseconds (``definitions`` turns those into the string)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValidationError(field, f"invalid duration {value}: negative")
        return
    string(64)(value, field)


_DURATION = duration
CHECK_RULES: dict[str, Rule] = {
    "ID": string(ID_MAX),
    "CheckID": string(ID_MAX),
    "Name": string(NAME_MAX * 2),
    "Notes": string(NOTES_MAX),
    "Status": string(64),
    "ServiceID": string(ID_MAX),
    "TTL": _DURATION,
    "HTTP": string(),
    "Header": headers,
    "Method": string(64),
    "Body": string(NOTES_MAX),
    "TCP": string(),
    "UDP": string(),
    "GRPC": string(),
    "GRPCUseTLS": boolean,
    "Args": strings(),
    "ScriptArgs": strings(),
    "Shell": string(),
    "DockerContainerID": string(),
    "AliasNode": string(NAME_MAX),
    "AliasService": string(ID_MAX),
    "Interval": _DURATION,
    "Timeout": _DURATION,
    "DeregisterCriticalServiceAfter": _DURATION,
    "SuccessBeforePassing": integer(),
    "FailuresBeforeWarning": integer(),
    "FailuresBeforeCritical": integer(),
    "TLSSkipVerify": boolean,
    "TLSServerName": string(ADDRESS_MAX),
    "OutputMaxSize": integer(0, NOTES_MAX * 16),
    "H2PING": string(),
    "H2PingUseTLS": boolean,
    "Namespace": string(NAME_MAX),
    "Partition": string(NAME_MAX),
    "Definition": obj,
    "Type": string(64),
    "CheckType": string(64),
    "Output": string(NOTES_MAX),
    "ServiceName": string(NAME_MAX),
    "ServiceTags": strings(TAG_MAX, TAGS_MAX),
    "Node": string(NAME_MAX),
}

_UPSTREAM_RULES: dict[str, Rule] = {
    "DestinationType": string(64),
    "DestinationName": string(NAME_MAX),
    "DestinationNamespace": string(NAME_MAX),
    "DestinationPartition": string(NAME_MAX),
    "DestinationPeer": string(NAME_MAX),
    "Datacenter": string(NAME_MAX),
    "LocalBindAddress": string(ADDRESS_MAX),
    "LocalBindPort": integer(0, 65535),
    "LocalBindSocketPath": string(),
    "LocalBindSocketMode": string(64),
    "Config": obj,
    "MeshGateway": obj,
    "CentrallyConfigured": boolean,
}

_PROXY_RULES: dict[str, Rule] = {
    "DestinationServiceName": string(NAME_MAX),
    "DestinationServiceID": string(ID_MAX),
    "LocalServiceAddress": string(ADDRESS_MAX),
    "LocalServicePort": integer(0, 65535),
    "LocalServiceSocketPath": string(),
    "Mode": string(64),
    "Config": obj,
    "Upstreams": array,
    "MeshGateway": obj,
    "Expose": obj,
    "TransparentProxy": obj,
    "AccessLogs": obj,
}


def check_proxy(proxy: Mapping[str, Any], prefix: str) -> None:
    """A ``Proxy`` block (Consul's ConnectProxyConfig, CamelCase keys):
    field types, and every upstream an object naming its destination with a
    local bind port, so the proxy never meets a registration it cannot use."""
    check_fields(proxy, _PROXY_RULES, prefix)
    for i, up in enumerate(proxy.get("Upstreams") or ()):
        where = f"{prefix}Upstreams[{i}]"
        obj(up, where)
        check_fields(up, _UPSTREAM_RULES, where + ".")
        name = up.get("DestinationName")
        if not name:
            raise ValidationError(where + ".DestinationName", "missing upstream service name")
        kind = up.get("DestinationType") or "service"
        if kind not in ("service", "prepared_query"):
            raise ValidationError(where + ".DestinationType", f"unknown type {kind!r}")
        if not up.get("LocalBindPort") and not up.get("LocalBindSocketPath"):
            raise ValidationError(where + ".LocalBindPort", "must be 1-65535")
