"""Consul's intention decision summary for one source => destination pair.

The service-topology endpoint (meshd.api.topology) reports it for each
up/downstream and the mesh graph (meshd.agent.mesh_stats) colours its edges
by it; a pure function over the intentions' JSON rows, below both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

WILDCARD = "*"


def decision(
    intentions: Sequence[Mapping[str, Any]], source: str, destination: str, default_allow: bool
) -> dict[str, Any]:
    """Consul's IntentionDecisionSummary for ``source`` => ``destination``
    (state store IntentionDecision): the highest-precedence intention that
    applies, else the default; with L7 permissions ``Allowed`` is false (only
    a request can be judged); ``HasExact`` when the winner names both sides."""
    applying = [
        i
        for i in intentions
        if i.get("SourceName") in (source, WILDCARD)
        and i.get("DestinationName") in (destination, WILDCARD)
    ]
    out = {
        "DefaultAllow": default_allow,
        "Allowed": default_allow,
        "HasPermissions": False,
        "ExternalSource": "",
        "HasExact": False,
    }
    if applying:
        best = max(applying, key=lambda i: int(i.get("Precedence") or 0))
        has_permissions = bool(best.get("Permissions"))
        out["Allowed"] = best.get("Action") == "allow" and not has_permissions
        out["HasPermissions"] = has_permissions
        out["ExternalSource"] = str((best.get("Meta") or {}).get("external-source") or "")
        out["HasExact"] = WILDCARD not in (best.get("SourceName"), best.get("DestinationName"))
    return out
