"""The intention decision ``/v1/internal/explain`` reports.

``intention_decision`` judges the described request the way the proxy that
receives it does (connect/proxy/l7_inbound.py):

- the destination is ``http``: ``connect.l7.rbac.evaluate`` over the
  destination's and ``*``'s service-intentions entries (the one intention
  store, ``/v1/connect/intentions`` included), in Consul's precedence
  order, built with the proxy's own converter (``sources_from_entries``):
  an L7 intention's first matching permission
  decides, an L4 one its action, none the default policy;
- otherwise the L4 decision ``/v1/agent/connect/authorize`` makes (the
  ``intentions.decide`` read: precedence, wildcards,
  ``connect.default_intention_policy``).
"""

from __future__ import annotations

from typing import Any, Protocol

from connect.l7.rbac import evaluate, order_sources
from connect.l7.request import Request as L7Request
from connect.proxy.l7_inbound import sources_from_entries

from ..wire import ReadOptions
from . import ports


class Ports(ports.Registry, ports.Configured, Protocol):
    """What this module needs from the agent."""


async def _read(agent: Ports, name: str, args: dict[str, Any]) -> Any:
    return (await agent.read(name, args, ReadOptions())).value


async def intention_decision(
    agent: Ports, source: str, destination: str, request: L7Request, *, http: bool
) -> dict[str, Any]:
    """``{"Destination", "Allowed", "Reason", "Intention", "Permission",
    "Evaluated"}`` for ``request`` from ``source`` to ``destination``.
    ``Evaluated`` is "L7" (the request's method, path and headers judged, as
    the destination's proxy does for an ``http`` service) or "L4" (the
    connection, for a tcp service). ``Permission`` is the index of the
    permission that decided, or None."""
    default_allow = agent.config.connect.default_intention_policy == "allow"
    if not http:
        args = {
            "source": source,
            "source_ns": "default",
            "destination": destination,
            "default_allow": default_allow,
        }
        decision = await _read(agent, "intentions.decide", args) or {}
        return {
            "Destination": destination,
            "Allowed": bool(decision.get("Allowed")),
            "Reason": str(decision.get("Reason") or ""),
            "Intention": decision.get("IntentionID"),
            "Permission": None,
            "Evaluated": "L4",
        }
    # One store: every intention is a source of a service-intentions entry.
    entries = await _read(agent, "config.list", {"kind": "service-intentions"}) or []
    rules = order_sources(sources_from_entries(entries, destination))
    rbac = evaluate(
        rules, request, destination=destination, source=source, default_allow=default_allow
    )
    return {
        "Destination": destination,
        "Allowed": rbac.allowed,
        "Reason": rbac.reason,
        "Intention": rbac.intention,
        "Permission": rbac.permission,
        "Evaluated": "L7",
    }
