"""The selectors ``?filter=`` accepts per endpoint, as Consul checks them.

Consul compiles a filter against the Go type an endpoint lists (go-bexpr
reflects over its exported fields) and answers 400 ``Selector "X" is not
valid`` for any other selector, or for an operator or value the field's type
does not take. These tables follow the "Filtering" sections of Consul's API
docs (https://developer.hashicorp.com/consul/api-docs/catalog#filtering-1,
/health#filtering-2, /agent/service#filtering, /agent/check#filtering,
/catalog#filtering) plus the other exported fields of the same Go structs
(``CreateIndex``, ``ModifyIndex``, a check's ``Type``...), so every filter
Consul takes is taken here. ``*`` stands for any one map key; a selector
through a list names the element's fields (``Checks.Status``).
"""

from __future__ import annotations

from collections.abc import Mapping

from .filter import Schema

__all__ = ["SCHEMAS", "schema_for"]


def _prefixed(prefix: str, fields: Mapping[str, type[object]]) -> dict[str, type[object]]:
    return {f"{prefix}{k}": v for k, v in fields.items()}


_INDEXES: dict[str, type[object]] = {"CreateIndex": int, "ModifyIndex": int}

_UPSTREAM: dict[str, type[object]] = {
    "Datacenter": str,
    "DestinationName": str,
    "DestinationNamespace": str,
    "DestinationPartition": str,
    "DestinationPeer": str,
    "DestinationType": str,
    "LocalBindAddress": str,
    "LocalBindPort": int,
    "LocalBindSocketPath": str,
    "LocalBindSocketMode": str,
    "MeshGateway.Mode": str,
    "CentrallyConfigured": bool,
}

_PROXY: dict[str, type[object]] = {
    "": dict,
    ".DestinationServiceID": str,
    ".DestinationServiceName": str,
    ".LocalServiceAddress": str,
    ".LocalServicePort": int,
    ".LocalServiceSocketPath": str,
    ".Mode": str,
    ".MeshGateway.Mode": str,
    ".TransparentProxy.OutboundListenerPort": int,
    ".TransparentProxy.DialedDirectly": bool,
    ".Expose.Checks": bool,
    ".Expose.Paths": list,
    ".Expose.Paths.ListenerPort": int,
    ".Expose.Paths.Path": str,
    ".Expose.Paths.LocalPathPort": int,
    ".Expose.Paths.Protocol": str,
    ".Expose.Paths.ParsedFromCheck": bool,
    ".Upstreams": list,
    **{f".Upstreams.{k}": v for k, v in _UPSTREAM.items()},
}


def _node_service(prefix: str, *, service_key: str) -> dict[str, type[object]]:
    """A ``NodeService`` (agent services, the Service of health entries)."""
    fields: dict[str, type[object]] = {
        "Kind": str,
        "ID": str,
        service_key: str,
        "Tags": list,
        "Address": str,
        "TaggedAddresses": dict,
        "TaggedAddresses.*.Address": str,
        "TaggedAddresses.*.Port": int,
        "Meta": dict,
        "Meta.*": str,
        "Port": int,
        "SocketPath": str,
        "Weights.Passing": int,
        "Weights.Warning": int,
        "EnableTagOverride": bool,
        "Connect.Native": bool,
        "PeerName": str,
        **{f"Proxy{k}": v for k, v in _PROXY.items()},
        **_INDEXES,
    }
    return _prefixed(prefix, fields)


_NODE: dict[str, type[object]] = {
    "ID": str,
    "Node": str,
    "Address": str,
    "Datacenter": str,
    "TaggedAddresses": dict,
    "TaggedAddresses.*": str,
    "Meta": dict,
    "Meta.*": str,
    "PeerName": str,
    **_INDEXES,
}

_CHECK: dict[str, type[object]] = {
    "Node": str,
    "CheckID": str,
    "Name": str,
    "Status": str,
    "Notes": str,
    "Output": str,
    "ServiceID": str,
    "ServiceName": str,
    "ServiceTags": list,
    "Type": str,
    "Interval": str,
    "Timeout": str,
    "ExposedPort": int,
    "PeerName": str,
    "Definition": dict,
    "Definition.*": str,
    **_INDEXES,
}

_SERVICE_NODE: dict[str, type[object]] = {
    "ID": str,
    "Node": str,
    "Address": str,
    "Datacenter": str,
    "TaggedAddresses": dict,
    "TaggedAddresses.*": str,
    "NodeMeta": dict,
    "NodeMeta.*": str,
    "ServiceKind": str,
    "ServiceID": str,
    "ServiceName": str,
    "ServiceTags": list,
    "ServiceAddress": str,
    "ServiceTaggedAddresses": dict,
    "ServiceTaggedAddresses.*.Address": str,
    "ServiceTaggedAddresses.*.Port": int,
    "ServiceWeights.Passing": int,
    "ServiceWeights.Warning": int,
    "ServiceMeta": dict,
    "ServiceMeta.*": str,
    "ServicePort": int,
    "ServiceSocketPath": str,
    "ServiceEnableTagOverride": bool,
    "ServiceConnect.Native": bool,
    "PeerName": str,
    **{f"ServiceProxy{k}": v for k, v in _PROXY.items()},
    **_INDEXES,
}

_CHECK_SERVICE_NODE: dict[str, type[object]] = {
    **_prefixed("Node.", _NODE),
    **_node_service("Service.", service_key="Service"),
    "Checks": list,
    **_prefixed("Checks.", _CHECK),
}

SCHEMAS: dict[str, Schema] = {
    "catalog.nodes": _NODE,
    "catalog.service": _SERVICE_NODE,
    "catalog.connect": _SERVICE_NODE,
    "health.service": _CHECK_SERVICE_NODE,
    "health.node": _CHECK,
    "health.checks": _CHECK,
    "health.state": _CHECK,
    "agent.services": _node_service("", service_key="Service"),
    "agent.checks": _CHECK,
}


def schema_for(name: str) -> Schema | None:
    """The selectors of endpoint (read) ``name``, or None to check none."""
    return SCHEMAS.get(name)
