"""Registry reads behind /v1/catalog/gateway-services/:gateway,
/v1/health/ingress/:service and /v1/operator/usage.

Entries for ``meshd.agent.reads.READS`` (``fn(store, ws, args) -> (index,
json)``). Gateways link to services through their config entries, as in
Consul: an ``ingress-gateway`` entry's ``Listeners[].Services[]`` and a
``terminating-gateway`` entry's ``Services[]``; the name ``*`` links every
typical service (``FromWildcard``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from registry import queries as q
from registry import shapes
from registry.records import ConfigEntry
from registry.state.store import StateStore
from registry.state.watch import WatchSet

JSON = Any
ReadFn = Callable[[StateStore, WatchSet | None, Mapping[str, Any]], tuple[int, JSON]]
GATEWAY_KINDS = ("ingress-gateway", "terminating-gateway")
_PROXY_KINDS = (
    "connect-proxy",
    "mesh-gateway",
    "ingress-gateway",
    "terminating-gateway",
    "api-gateway",
)


def _objects(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _typical_names(store: StateStore) -> list[str]:
    names = {s.service for s in store.catalog.services.values() if not s.kind}
    return sorted(names - {"consul"})


def _links(store: StateStore, entry: ConfigEntry) -> Iterator[dict[str, Any]]:
    """Consul's ``GatewayService`` rows of one gateway config entry."""
    base = {"Gateway": {"Name": entry.name}, "GatewayKind": entry.kind}
    if entry.kind == "ingress-gateway":
        for listener in _objects(entry.body.get("Listeners")):
            for svc in _objects(listener.get("Services")):
                extra = {
                    "Port": listener.get("Port", 0),
                    "Protocol": listener.get("Protocol") or "tcp",
                    "Hosts": svc.get("Hosts") or None,
                }
                yield from _expand(store, base, str(svc.get("Name") or ""), extra)
        return
    for svc in _objects(entry.body.get("Services")):
        extra = {k: svc.get(k) or "" for k in ("CAFile", "CertFile", "KeyFile", "SNI")}
        yield from _expand(store, base, str(svc.get("Name") or ""), extra)


def _expand(
    store: StateStore, base: Mapping[str, Any], name: str, extra: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    wildcard = name == "*"
    for target in _typical_names(store) if wildcard else [name]:
        yield {**base, "Service": {"Name": target}, **extra, "FromWildcard": wildcard}


def _gateway_entries(store: StateStore) -> list[ConfigEntry]:
    return [e for e in store.config.entries.sorted_records() if e.kind in GATEWAY_KINDS]


def _index(store: StateStore) -> int:
    return max(1, store.index_of("config-entries", "services"))


def gateway_services(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """/v1/catalog/gateway-services/:gateway: the services a gateway links."""
    store.watch(ws, "config-entries", "services")
    gateway = str(a.get("name") or "")
    rows = [row for e in _gateway_entries(store) if e.name == gateway for row in _links(store, e)]
    return _index(store), rows


def health_ingress(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """/v1/health/ingress/:service: the ingress gateway instances (with
    health) whose config entry exposes ``service``."""
    store.watch(ws, "config-entries", "services", "checks", "nodes")
    service = str(a.get("name") or "")
    gateways = sorted(
        {
            e.name
            for e in _gateway_entries(store)
            if e.kind == "ingress-gateway"
            and any(row["Service"]["Name"] == service for row in _links(store, e))
        }
    )
    rows: list[JSON] = []
    index = _index(store)
    for gw in gateways:
        idx, found = q.health_service_nodes(
            store, ws, gw, bool(a.get("passing")), a.get("tags", ())
        )
        index = max(index, idx)
        rows += [
            shapes.check_service_node_json(r) for r in found if r.service.kind == "ingress-gateway"
        ]
    return index, rows


def operator_usage(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """Consul's ``ServiceUsage`` of this datacenter (under its name)."""
    store.watch(ws, "services", "nodes")
    instances = list(store.catalog.services.values())
    connect = dict.fromkeys(("connect-native", *_PROXY_KINDS), 0)
    for s in instances:
        if s.kind in connect:
            connect[s.kind] += 1
        elif s.connect and s.connect.get("Native"):
            connect["connect-native"] += 1
    billable = [s for s in instances if not s.kind and s.service != "consul"]
    usage = {
        "Services": len({s.service for s in instances if not s.kind}),
        "ServiceInstances": sum(1 for s in instances if not s.kind),
        "ConnectServiceInstances": connect,
        "BillableServiceInstances": len(billable),
        "Nodes": len(store.catalog.nodes),
    }
    return max(1, store.index_of("services", "nodes")), {str(a.get("datacenter") or ""): usage}


GATEWAY_READS: dict[str, ReadFn] = {
    "catalog.gateway_services": gateway_services,
    "health.ingress": health_ingress,
    "operator.usage": operator_usage,
}
