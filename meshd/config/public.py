"""The configuration as ``/v1/agent/self`` shows it: Consul-style names, no secrets.

``Config`` holds the handful of fields Consul puts there; ``DebugConfig``
is the whole tree with CamelCase names (``ports.http`` -> ``Ports.HTTP``),
durations as Go strings (``"30s"``) and every token replaced by
``"hidden"`` when set, as Consul's sanitised DebugConfig does. Check HTTP
headers are hidden too: they often carry credentials.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from meshd.config.addresses import JoinAddress
from meshd.durations import format_duration

__all__ = ["camel", "public_dict"]

_WORDS = {
    "acl": "ACL",
    "addr": "Addr",
    "ca": "CA",
    "dns": "DNS",
    "grpc": "GRPC",
    "http": "HTTP",
    "https": "HTTPS",
    "id": "ID",
    "json": "JSON",
    "kv": "KV",
    "rpc": "RPC",
    "tls": "TLS",
    "ttl": "TTL",
    "ui": "UI",
    "udp": "UDP",
}
HIDDEN = "hidden"


def camel(name: str) -> str:
    """Consul-style CamelCase for a snake_case key: ``node_id`` -> ``NodeID``."""
    return "".join(_WORDS.get(part, part.capitalize()) for part in name.split("_"))


def _hide(value: Any) -> str:
    return HIDDEN if value else ""


def _definition(value: Any) -> Any:
    # A service or check definition with its secrets hidden, keys as in the file.
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for name, element in value.items():
            if name == "token":
                out[name] = _hide(element)
            elif name == "header":
                out[name] = {h: [HIDDEN] for h in element}
            else:
                out[name] = _definition(element)
        return out
    if isinstance(value, list | tuple):
        return [_definition(v) for v in value]
    return value


def _value(value: Any, *, duration: bool) -> Any:
    if duration and isinstance(value, Mapping):
        return {k: format_duration(v) for k, v in value.items()}
    if duration:
        return format_duration(value)
    if isinstance(value, JoinAddress):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return [_value(v, duration=False) for v in value]
    return value


def _walk(node: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        name = camel(f.name)
        if f.metadata.get("secret"):
            out[name] = _hide(value)
        elif dataclasses.is_dataclass(value):
            out[name] = _walk(value)
        elif f.name in ("services", "checks"):
            out[name] = _definition(value)
        else:
            out[name] = _value(value, duration=bool(f.metadata.get("duration")))
    return out


def public_dict(config: Any) -> dict[str, Any]:
    """``{"Config": {...}, "DebugConfig": {...}}`` for an ``AgentConfig``, without secrets."""
    return {
        "Config": {
            "Datacenter": config.datacenter,
            "PrimaryDatacenter": config.primary_datacenter,
            "NodeName": config.node_name,
            "NodeID": config.node_id or "",
            "Server": config.server,
        },
        "DebugConfig": _walk(config),
    }
