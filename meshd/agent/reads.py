"""Every read the API can ask of a server, by name, as Consul JSON.

A read is ``fn(store, ws, args) -> (index, json)``: it runs a registry query,
registering watches in ``ws`` for blocking queries, and shapes the result the
way Consul's endpoint answers. Servers run these locally for their own HTTP
API and, by name, for client agents over RPC (``Registry.Read``), so a
query's meaning lives in exactly one place. ``?filter=`` is applied here, on
the server, as Consul does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from registry import queries as q
from registry import shapes
from registry.codec import CodecError, from_obj
from registry.commands import TxnOp
from registry.errors import ValidationError
from registry.records import AutopilotConfig
from registry.state import autopilot as autopilot_state
from registry.state import coordinates as coordinate_state
from registry.state.store import StateStore
from registry.state.watch import WatchSet

from ..filter import apply_filter
from ..filter_schemas import COORDINATE, schema_for
from .autopilot import autopilot_json
from .coordinates import coordinate_json

JSON = Any
ReadFn = Callable[[StateStore, WatchSet | None, Mapping[str, Any]], tuple[int, JSON]]


class UnknownRead(KeyError):
    """No read with that name exists (a client/server version mismatch)."""


def _meta(args: Mapping[str, Any]) -> dict[str, str] | None:
    meta = args.get("node_meta")
    return dict(meta) if meta else None


def _filtered(args: Mapping[str, Any], items: list[JSON], read: str = "") -> list[JSON]:
    """``items`` that match ``?filter=``, checked against read ``read``'s
    selectors (``meshd.filter_schemas``) as Consul checks them."""
    expr = args.get("filter")
    return apply_filter(items, expr, schema_for(read)) if expr else items


def catalog_nodes(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, nodes = q.catalog_nodes(store, ws, _meta(a))
    return idx, _filtered(a, [shapes.node_json(n) for n in nodes], "catalog.nodes")


def catalog_services(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    idx, services = q.catalog_services(store, ws, _meta(a))
    if not a.get("filter"):
        return idx, services
    # Consul filters the service instances (ServiceNode rows), then builds
    # the name -> tags map from those that match.
    out: dict[str, list[str]] = {}
    for name in services:
        _, rows = q.catalog_service_nodes(store, None, name, (), _meta(a))
        kept = _filtered(a, [shapes.service_node_json(r) for r in rows], "catalog.service")
        if kept:
            out[name] = sorted({tag for row in kept for tag in row["ServiceTags"]})
    return idx, out


def catalog_service(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    idx, rows = q.catalog_service_nodes(store, ws, a["name"], a.get("tags", ()), _meta(a))
    return idx, _filtered(a, [shapes.service_node_json(r) for r in rows], "catalog.service")


def catalog_connect(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    idx, rows = q.catalog_connect_service_nodes(store, ws, a["name"])
    return idx, _filtered(a, [shapes.service_node_json(r) for r in rows], "catalog.connect")


def catalog_node(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, ns = q.catalog_node(store, ws, a["name"])
    if ns is None:
        return idx, None
    out = shapes.node_services_json(ns)
    if a.get("filter"):  # over each value of the Services map, as Consul does
        services = out["Services"]
        kept = _filtered(a, list(services.values()), "node.services")
        out["Services"] = {s["ID"]: s for s in kept}
    return idx, out


def catalog_node_services(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    idx, ns = q.catalog_node(store, ws, a["name"])
    if ns is None:
        return idx, None
    out = shapes.node_services_list_json(ns)
    out["Services"] = _filtered(a, out["Services"], "node.services")
    return idx, out


def health_node(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, checks = q.health_node_checks(store, ws, a["name"])
    return idx, _filtered(a, [shapes.check_json(c) for c in checks], "health.node")


def health_checks(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, checks = q.health_service_checks(store, ws, a["name"], _meta(a))
    return idx, _filtered(a, [shapes.check_json(c) for c in checks], "health.checks")


def health_service(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    fn = q.health_connect_service_nodes if a.get("connect") else q.health_service_nodes
    idx, rows = fn(store, ws, a["name"], bool(a.get("passing")), a.get("tags", ()), _meta(a))
    return idx, _filtered(a, [shapes.check_service_node_json(r) for r in rows], "health.service")


def health_state(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, checks = q.health_checks_in_state(store, ws, a["state"], _meta(a))
    return idx, _filtered(a, [shapes.check_json(c) for c in checks], "health.state")


def kv_get(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, entry = q.kv_get(store, ws, a["key"])
    return idx, None if entry is None else [shapes.kv_json(entry)]


def kv_list(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, entries = q.kv_list(store, ws, a["key"])
    return idx, _filtered(a, [shapes.kv_json(e) for e in entries]) or None


def kv_keys(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, keys = q.kv_keys(store, ws, a["key"], a.get("separator", ""))
    return idx, keys or None


def session_info(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, s = q.session_info(store, ws, a["id"])
    return idx, [] if s is None else [shapes.session_json(s)]


def session_node(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, sessions = q.session_node(store, ws, a["name"])
    return idx, _filtered(a, [shapes.session_json(s) for s in sessions])


def session_list(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, sessions = q.session_list(store, ws)
    return idx, _filtered(a, [shapes.session_json(s) for s in sessions])


def ca_roots(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, roots = q.ca_roots(store, ws)
    return idx, shapes.ca_roots_json(roots)


def ca_config(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    idx, config = q.ca_config(store, ws)
    return idx, shapes.ca_config_json(config) if config is not None else None


def autopilot_config(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """GET /v1/operator/autopilot/configuration: the stored configuration,
    else the defaults (CreateIndex/ModifyIndex 0) the servers use."""
    idx, config = autopilot_state.autopilot_config(store, ws)
    return idx, autopilot_json(config if config is not None else AutopilotConfig())


def coordinate_nodes(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    idx, rows = coordinate_state.coordinate_list(store, ws)
    if "segment" in a:
        rows = [c for c in rows if c.segment == a["segment"]]
    expr, items = a.get("filter"), [coordinate_json(c) for c in rows]
    return idx, apply_filter(items, expr, COORDINATE) if expr else items


def coordinate_node(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """A node's coordinates; None (404) when it has none."""
    idx, rows = coordinate_state.coordinate_node(store, ws, str(a.get("node") or ""))
    if "segment" in a:
        rows = [c for c in rows if c.segment == a["segment"]]
    return idx, [coordinate_json(c) for c in rows] if rows else None


READS: dict[str, ReadFn] = {
    "catalog.nodes": catalog_nodes,
    "catalog.services": catalog_services,
    "catalog.service": catalog_service,
    "catalog.connect": catalog_connect,
    "catalog.node": catalog_node,
    "catalog.node_services": catalog_node_services,
    "health.node": health_node,
    "health.checks": health_checks,
    "health.service": health_service,
    "health.state": health_state,
    "kv.get": kv_get,
    "kv.list": kv_list,
    "kv.keys": kv_keys,
    "session.info": session_info,
    "session.node": session_node,
    "session.list": session_list,
    "ca.roots": ca_roots,
    "ca.config": ca_config,
    "operator.autopilot_config": autopilot_config,
    "coordinate.nodes": coordinate_nodes,
    "coordinate.node": coordinate_node,
}


def lookup(name: str) -> ReadFn:
    """The read called ``name``; raises ``UnknownRead``."""
    try:
        return READS[name]
    except KeyError:
        raise UnknownRead(name) from None


def txn_read(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    """A read-only /v1/txn (only get, get-tree and check-* verbs), answered from
    the state store without Raft as Consul's ``Txn.Read`` does; never blocks.

    ``a["ops"]`` is the ops as ``registry.codec.to_obj(ops, tuple[TxnOp, ...])``
    (plain data, so client agents can forward it). Raises ``ValidationError``
    when they do not decode. The answer is Consul's ``{"Results", "Errors"}``.
    """
    try:
        ops = from_obj(a.get("ops") or [], tuple[TxnOp, ...])
    except CodecError as exc:
        raise ValidationError("Ops", f"undecodable transaction ops: {exc}") from None
    idx, response = q.txn_read(store, ops)
    return idx, shapes.txn_response_json(response)


READS["txn.read"] = txn_read


def _connect_reads() -> None:
    from .acl_table_reads import ACL_READS  # one table; these areas keep theirs apart
    from .canary import CANARY_READS
    from .reads_chain import CHAIN_READS
    from .reads_config import CONFIG_READS
    from .reads_connect import CONNECT_READS
    from .reads_gateways import GATEWAY_READS

    READS.update(CONNECT_READS)
    READS.update(ACL_READS)
    READS.update(CONFIG_READS)
    READS.update(GATEWAY_READS)
    READS.update(CHAIN_READS)
    READS.update(CANARY_READS)


_connect_reads()
