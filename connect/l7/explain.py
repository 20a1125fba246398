"""``meshd explain``'s core: a described request through the proxy's decision.

The proxy's L7 outbound path builds ``table_from_chain(chain, endpoints)``
and asks ``Decider.decide`` with its outlier ejections excluded; this module
does exactly that (no second router) and adds what a reader needs to follow
the decision in the chain's own terms:

- ``Route``: the router route that matched (index, its ``Match`` and
  ``Destination`` as written, ``Default`` for the catch-all the compiler
  appends), or None without a router;
- ``Splits``: each splitter step with its buckets (next node or target,
  weight %) and the bucket this evaluation picked; weights are the
  distribution, the pick is one draw from the ``rng`` passed in;
- ``Targets``: the target tried first and then each failover target, with
  its service, subset (``Filter``, ``OnlyPassing``), connect and request
  timeouts, failover list, load balancer, and its instances split into
  eligible and ejected; ``RedirectedFrom`` names the service the route or
  split asked for when a resolver redirect replaced it;
- the route timeout, retry policy, mirror and fault of ``Decision.explain``.

A chain whose protocol is not ``http`` is served at L4 by the proxy: the
answer says ``L7: false`` and leaves out route, timeout and retries.

Pure: no I/O, no clock. Raises ``table.TableError`` for a chain that does
not convert.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from connect.l7.decide import Decider, Decision, Table
from connect.l7.request import Request
from connect.l7.table import table_from_chain

JSON = Any
HTTP_PROTOCOLS = ("http",)  # as the proxy's L7 outbound (l7_outbound.HTTP_PROTOCOLS)
_NODE_SUFFIX = ".default.default"


def _node_service(node: Mapping[str, JSON]) -> str:
    return str(node.get("Name") or "").removesuffix(_NODE_SUFFIX)


def _route_json(chain: Mapping[str, JSON], decision: Decision) -> JSON:
    nodes = chain.get("Nodes") or {}
    start = nodes.get(str(chain.get("StartNode") or "")) or {}
    if start.get("Type") != "router" or decision.route_index is None:
        return None
    routes = start.get("Routes") or []
    i = decision.route_index
    route = routes[i] if 0 <= i < len(routes) else {}
    definition = route.get("Definition") or {}
    return {
        "Index": i,
        "Default": i == len(routes) - 1,  # the compiler always appends the catch-all
        "Match": definition.get("Match"),
        "Destination": definition.get("Destination"),
        "NextNode": route.get("NextNode"),
    }


def _requested_service(chain: Mapping[str, JSON], decision: Decision, route: JSON) -> str:
    """The service the last router/splitter step asked for (before redirects)."""
    nodes = chain.get("Nodes") or {}
    if decision.splits:
        step = decision.splits[-1]
        node = nodes.get(step.node) or {}
        splits = node.get("Splits") or []
        if 0 <= step.picked < len(splits):
            definition = splits[step.picked].get("Definition") or {}
            return str(definition.get("Service") or _node_service(node))
    if route is not None:
        return str((route.get("Destination") or {}).get("Service") or chain.get("ServiceName"))
    return str(chain.get("ServiceName") or "")


def _resolver_of(chain: Mapping[str, JSON], target_id: str) -> Mapping[str, JSON]:
    for node in (chain.get("Nodes") or {}).values():
        if (
            node.get("Type") == "resolver"
            and (node.get("Resolver") or {}).get("Target") == target_id
        ):
            return dict(node)
    return {}


def target_json(
    chain: Mapping[str, JSON],
    target_id: str,
    endpoints: Sequence[str],
    ejected: Collection[str],
) -> dict[str, JSON]:
    """One chain target as explain shows it, its instances split by ejection."""
    t = (chain.get("Targets") or {}).get(target_id) or {}
    node = _resolver_of(chain, target_id)
    resolver = node.get("Resolver") or {}
    subset = t.get("Subset") or {}
    return {
        "ID": target_id,
        "Service": t.get("Service"),
        "ServiceSubset": t.get("ServiceSubset") or "",
        "Datacenter": t.get("Datacenter"),
        "Filter": subset.get("Filter") or "",
        "OnlyPassing": bool(subset.get("OnlyPassing")),
        "ConnectTimeout": t.get("ConnectTimeout") or resolver.get("ConnectTimeout"),
        "RequestTimeout": resolver.get("RequestTimeout") or "",
        "DefaultResolver": bool(resolver.get("Default")),
        "Failover": list((resolver.get("Failover") or {}).get("Targets") or []),
        "LoadBalancer": node.get("LoadBalancer"),
        "Eligible": [e for e in endpoints if e not in ejected],
        "Ejected": [e for e in endpoints if e in ejected],
    }


def explain(
    chain: Mapping[str, JSON],
    endpoints: Mapping[str, Sequence[str]],
    ejected: Mapping[str, Collection[str]],
    request: Request,
    *,
    rng: random.Random,
    table: Table | None = None,
) -> dict[str, JSON]:
    """The decision for ``request`` on ``chain`` with ``endpoints`` (target
    id -> healthy instance addresses) and ``ejected`` (target id -> ejected
    addresses), as JSON. ``table``: ``table_from_chain(chain, endpoints)``
    already built (a caller deciding many requests on one chain). Raises
    ``TableError``."""
    if table is None:
        table = table_from_chain(chain, endpoints)
    decision = Decider(table).decide(request, rng=rng, excluded=lambda tid: ejected.get(tid, ()))
    protocol = str(chain.get("Protocol") or "tcp")
    l7 = protocol in HTTP_PROTOCOLS
    out = decision.explain()
    route = _route_json(chain, decision)
    first = decision.target
    tried = list(decision.tried_targets) or ([first] if first else [])
    targets = [
        target_json(chain, tid, endpoints.get(tid, ()), ejected.get(tid, ())) for tid in tried
    ]
    requested = _requested_service(chain, decision, route)
    for t in targets[:1]:
        t["RedirectedFrom"] = requested if requested and requested != t["Service"] else None
    chosen = next((t for t in targets if t["ID"] == decision.target), None)
    if chosen is not None:  # the target that answers (or the first one, when none can)
        out["Eligible"], out["Ejected"] = chosen["Eligible"], chosen["Ejected"]
    out.update(
        {
            "Protocol": protocol,
            "L7": l7,
            "LocalStatus": decision.status_if_local,
            "Route": route,
            "Targets": targets,
        }
    )
    if not l7:
        for key in ("Route", "Splits", "TimeoutSeconds", "Retry", "Mirror", "Fault", "ForwardPath"):
            out[key] = None
    return out
