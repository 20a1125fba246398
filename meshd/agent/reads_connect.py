"""The registry reads behind /v1/connect/intentions and /v1/agent/connect/authorize.

Entries for ``meshd.agent.reads.READS`` (merged there with
``READS.update(CONNECT_READS)``), in the same shape: ``fn(store, ws, args) ->
(index, json)``. Each registers a watch on the service-intentions config
entries, where intentions are stored (and, for ``intentions.decide``, on
the CA tables), so every one of them can block and wakes on an entry change.

Precedence is computed from the names of each source
(``registry.records.Intention.with_precedence``) and match order is the state
store's (after Consul's ``IntentionPrecedenceSorter``); the authorization
decision is ``connect.intentions.decide``, computed here on the server so a
client agent needs one round trip and never decodes intention records. The
registry records go to ``decide`` as they are: they have every attribute of
``connect.intentions.IntentionLike`` (mypy checks it at the call).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connect.intentions import decide
from registry import queries as q
from registry import shapes
from registry.state.store import StateStore
from registry.state.watch import WatchSet

from ..filter import apply_filter

JSON = Any
# The same type as ``meshd.agent.reads.ReadFn``, spelt out here so that
# reads.py can import this module without an import cycle.
ReadFn = Callable[[StateStore, WatchSet | None, Mapping[str, Any]], tuple[int, JSON]]
MATCH_BY = ("source", "destination")


def intentions_list(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """Every intention, highest precedence first; ``a["filter"]`` as ``?filter=``."""
    idx, found = q.intention_list(store, ws)
    items = [shapes.intention_json(i) for i in found]
    expr = a.get("filter")
    return idx, apply_filter(items, expr) if expr else items


def intentions_get(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """The intention with ID ``a["id"]``, or None."""
    idx, found = q.intention_get(store, ws, a["id"])
    return idx, None if found is None else shapes.intention_json(found)


def intentions_exact(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """The intention for exactly ``a["source"]`` => ``a["destination"]``, or None."""
    idx, found = q.intention_exact(store, ws, a["source"], a["destination"])
    return idx, None if found is None else shapes.intention_json(found)


def intentions_match(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """``{name: [intention, ...]}`` for each of ``a["names"]`` matched on side
    ``a["by"]`` (``source`` or ``destination``), in evaluation order.

    Raises ``ValueError`` for another ``by`` (the API checks it first).
    """
    by = a["by"]
    if by not in MATCH_BY:
        raise ValueError(f"by must be 'source' or 'destination', not {by!r}")
    out: dict[str, list[JSON]] = {}
    idx = 1
    for name in a["names"]:
        idx, found = q.intention_match(store, ws, by, name)
        out[name] = [shapes.intention_json(i) for i in found]
    return idx, out


def intentions_check(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """``{"Allowed": bool}`` for ``a["source"]`` => ``a["destination"]``; no
    matching intention means ``a["default_allow"]``."""
    idx, allowed = q.intention_check(
        store, ws, a["source"], a["destination"], bool(a.get("default_allow"))
    )
    return idx, {"Allowed": allowed}


def intentions_decide(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """The authorization decision for ``a["source"]`` (in namespace
    ``a["source_ns"]``, default "default") => ``a["destination"]``
    with the cluster's trust domain, so /v1/agent/connect/authorize needs one
    read: ``{"Allowed", "Reason", "IntentionID", "TrustDomain"}``.

    ``TrustDomain`` is "" while the CA is not initialised; the caller refuses
    to authorize then.
    """
    idx, matches = q.intention_match(store, ws, "destination", a["destination"])
    roots_idx, roots = q.ca_roots(store, ws)
    decision = decide(
        matches,
        a["source"],
        a["destination"],
        default_allow=bool(a.get("default_allow")),
        source_ns=a.get("source_ns") or "default",
    )
    return max(idx, roots_idx), {
        "Allowed": decision.allowed,
        "Reason": decision.reason,
        "IntentionID": decision.intention_id,
        "TrustDomain": roots.trust_domain,
    }


CONNECT_READS: dict[str, ReadFn] = {
    "intentions.list": intentions_list,
    "intentions.get": intentions_get,
    "intentions.exact": intentions_exact,
    "intentions.match": intentions_match,
    "intentions.check": intentions_check,
    "intentions.decide": intentions_decide,
}
