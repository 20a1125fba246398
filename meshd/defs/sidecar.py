"""``Connect.SidecarService``: a service's sidecar proxy registration.

Follows Consul's agent/sidecar_service.go
(https://developer.hashicorp.com/consul/docs/connect/proxies/deploy-sidecar-services):
registering ``web`` with ``"Connect": {"SidecarService": {}}`` also registers
``web-sidecar-proxy`` of kind ``connect-proxy`` whose ``Proxy`` names the
destination (``DestinationServiceName``/``ID``, ``LocalServiceAddress``
127.0.0.1, ``LocalServicePort`` = the parent's port), with a port taken from
21000-21255 unless given, the parent's tags and meta unless it has its own,
and two checks: a TCP "Connect Sidecar Listening" check on the proxy's port
and an alias of the parent. The parent is stored without ``SidecarService``;
deregistering the parent removes its sidecar. One deliberate difference:
the sidecar inherits the parent's ``Address`` when it has none of its own,
so proxies of agents sharing a host on distinct loopback addresses bind
distinct addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from registry.errors import ValidationError

from .definitions import SERVICE_FIELDS, ServiceDefinition, parse_service
from .field_rules import SERVICE_RULES, check_fields, normalise_nested

SIDECAR_SUFFIX = "-sidecar-proxy"
PORT_RANGE = (21000, 21255)  # Consul's ports.sidecar_min_port / sidecar_max_port

_SERVICE_KEYS = {k.lower(): k for k in SERVICE_FIELDS}


def sidecar_id(parent_id: str) -> str:
    return parent_id + SIDECAR_SUFFIX


def is_sidecar_of(defn: ServiceDefinition, parent_id: str) -> bool:
    """True when ``defn`` is the sidecar registered together with ``parent_id``."""
    proxy = defn.service.proxy or {}
    return defn.service.id == sidecar_id(parent_id) and (
        proxy.get("DestinationServiceID") == parent_id
    )


def _upstreams(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError("Connect.SidecarService.Proxy.Upstreams", "must be a list")
    out = []
    for i, up in enumerate(raw):
        field = f"Connect.SidecarService.Proxy.Upstreams[{i}]"
        if not isinstance(up, Mapping):
            raise ValidationError(field, "must be an object")
        up = dict(up)
        name = up.get("DestinationName")
        if not isinstance(name, str) or not name:
            raise ValidationError(field + ".DestinationName", "missing upstream service name")
        port = up.get("LocalBindPort")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            got = port if isinstance(port, int) else type(port).__name__
            raise ValidationError(field + ".LocalBindPort", f"must be 1-65535, got {got}")
        kind = up.setdefault("DestinationType", "service")
        if kind != "service":
            raise ValidationError(field + ".DestinationType", "only 'service' is supported")
        up.setdefault("LocalBindAddress", "127.0.0.1")
        up.setdefault("Config", {})
        out.append(up)
    return out


def _port(sid: str, services: Mapping[str, ServiceDefinition], own: Iterable[Any] = ()) -> int:
    """The sidecar's existing port, else the first in the range that no local
    service uses and no upstream (another sidecar's or its own, ``own``) binds."""
    existing = services.get(sid)
    if existing is not None and existing.service.port:
        return existing.service.port
    used = {d.service.port for s, d in services.items() if s != sid}
    used.update(p for p in own if isinstance(p, int))
    for s, d in services.items():  # nor a port another sidecar's upstream binds
        upstreams = (d.service.proxy or {}).get("Upstreams") if s != sid else None
        for up in upstreams if isinstance(upstreams, list) else ():
            if isinstance(up, Mapping) and isinstance(up.get("LocalBindPort"), int):
                used.add(up["LocalBindPort"])
    for port in range(PORT_RANGE[0], PORT_RANGE[1] + 1):
        if port not in used:
            return port
    raise ValidationError(
        "Connect.SidecarService.Port",
        f"no free sidecar port left in {PORT_RANGE[0]}-{PORT_RANGE[1]}; set Port",
    )


def _default_checks(sid: str, parent_id: str, address: str, port: int) -> list[dict[str, Any]]:
    return [
        {
            "CheckID": f"service:{sid}:1",
            "Name": "Connect Sidecar Listening",
            "TCP": f"{address or '127.0.0.1'}:{port}",
            "Interval": "10s",
        },
        {
            "CheckID": f"service:{sid}:2",
            "Name": f"Connect Sidecar Aliasing {parent_id}",
            "AliasService": parent_id,
        },
    ]


def expand(
    defn: ServiceDefinition,
    services: Mapping[str, ServiceDefinition],
    *,
    node: str,
    default_address: str = "",
) -> tuple[ServiceDefinition, ServiceDefinition | None]:
    """Split ``defn`` into the parent (without ``SidecarService``) and its
    sidecar, if it asks for one. ``services`` are the agent's current local
    services (for the port); ``default_address`` is the sidecar's Address
    when neither it nor its parent has one (the agent's loopback address in
    ``-dev``, so nothing listens beyond loopback). Raises ``ValidationError``
    naming the field."""
    connect = normalise_nested(defn.service.connect or {})
    if "SidecarService" not in connect:
        return defn, None
    raw = connect.pop("SidecarService") or {}
    if not isinstance(raw, Mapping):
        raise ValidationError("Connect.SidecarService", "must be an object")
    parent_svc = defn.service
    if parent_svc.kind == "connect-proxy":
        raise ValidationError("Connect.SidecarService", "a proxy cannot have a sidecar")
    parent = replace(defn, service=replace(parent_svc, connect=connect or None))
    spec: dict[str, Any] = {
        _SERVICE_KEYS.get(str(k).lower().replace("_", ""), str(k)): v for k, v in raw.items()
    }
    check_fields(spec, SERVICE_RULES, "Connect.SidecarService.")
    if spec.get("Kind", "connect-proxy") not in ("", "connect-proxy"):
        raise ValidationError("Connect.SidecarService.Kind", "must be connect-proxy")
    if "SidecarService" in normalise_nested(spec.get("Connect") or {}):
        raise ValidationError("Connect.SidecarService.Connect", "a sidecar cannot have a sidecar")
    sid = str(spec.get("ID") or sidecar_id(parent_svc.id))
    spec["ID"], spec["Kind"] = sid, "connect-proxy"
    spec.setdefault("Name", parent_svc.service + SIDECAR_SUFFIX)
    if not spec.get("Tags") and parent_svc.tags:
        spec["Tags"] = list(parent_svc.tags)
    if not spec.get("Meta") and parent_svc.meta:
        spec["Meta"] = dict(parent_svc.meta)
    spec.setdefault("Address", parent_svc.address or default_address)
    proxy = dict(spec.get("Proxy") or {})
    upstreams = _upstreams(proxy.get("Upstreams"))
    if not spec.get("Port"):
        spec["Port"] = _port(sid, services, (u.get("LocalBindPort") for u in upstreams))
    proxy["DestinationServiceName"] = parent_svc.service
    proxy["DestinationServiceID"] = parent_svc.id
    proxy.setdefault("LocalServiceAddress", "127.0.0.1")
    proxy.setdefault("LocalServicePort", parent_svc.port)
    proxy["Upstreams"] = upstreams
    proxy.setdefault("Config", {})
    spec["Proxy"] = proxy
    if not spec.get("Check") and not spec.get("Checks"):
        spec["Checks"] = _default_checks(sid, parent_svc.id, spec["Address"], spec["Port"])
    try:
        sidecar = parse_service(spec, node=node)
    except ValidationError as exc:
        raise ValidationError(f"Connect.SidecarService.{exc.field}", exc.message) from None
    return parent, replace(sidecar, token=sidecar.token or defn.token)
