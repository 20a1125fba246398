"""The intention decision ``/v1/internal/explain`` reports.

``intention_decision`` is the one place where the L7 evaluation plugs in.
Until ``connect.l7.rbac.evaluate`` (L7 permissions per request) is
available here, it answers with the L4 decision that
``/v1/agent/connect/authorize`` makes (the ``intentions.decide`` read:
precedence, wildcards, ``connect.default_intention_policy``); an L4 read
of an intention with Permissions is Consul's "Matched L7 intention" deny,
and the answer says the permissions were not evaluated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connect.l7.request import Request as L7Request

from ..agent.wire import ReadOptions

if TYPE_CHECKING:
    from ..agent.agent import Agent


async def intention_decision(
    agent: Agent, source: str, destination: str, request: L7Request
) -> dict[str, Any]:
    """``{"Allowed", "Reason", "Intention", "Permission", "Evaluated"}`` for
    ``request`` from ``source`` to ``destination``. ``Evaluated`` is "L4"
    (connection level) or "L7" (the request's method, path and headers
    against the intention's Permissions)."""
    args = {
        "source": source,
        "source_ns": "default",
        "destination": destination,
        "default_allow": agent.config.connect.default_intention_policy == "allow",
    }
    decision = (await agent.read("intentions.decide", args, ReadOptions())).value or {}
    return {
        "Allowed": bool(decision.get("Allowed")),
        "Reason": str(decision.get("Reason") or ""),
        "Intention": decision.get("IntentionID"),
        "Permission": None,
        "Evaluated": "L4",
    }
