"""PUT /v1/operator/autopilot/configuration and GET /v1/operator/autopilot/state
(https://developer.hashicorp.com/consul/api-docs/operator/autopilot).

meshd's autopilot settings are fixed (``AutopilotSettings``; GET answers
them in ``operator``): a PUT with Consul's body is validated field by field
and answers ``true`` when it asks for the settings in force (``false`` for
a lost ``?cas=``), and 400 naming the first field it would change, rather
than accepting a change that would do nothing. The state document is
Consul's shape, derived from the leader's autopilot health.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..agent.autopilot import AutopilotSettings
from ..durations import parse_duration
from ..http import BadRequest, JSONFields, QueryOptions, Request, Response, Router, decode_json_body
from .common import check_dc

if TYPE_CHECKING:
    from ..agent.agent import Agent

CONFIG_FIELDS = JSONFields(
    (
        "CleanupDeadServers",
        "LastContactThreshold",
        "MaxTrailingLogs",
        "MinQuorum",
        "ServerStabilizationTime",
        "RedundancyZoneTag",
        "DisableUpgradeMigration",
        "UpgradeVersionTag",
        "CreateIndex",
        "ModifyIndex",
    )
)
_KINDS: dict[str, Any] = {
    "CleanupDeadServers": bool,
    "DisableUpgradeMigration": bool,
    "MaxTrailingLogs": int,
    "MinQuorum": int,
    "RedundancyZoneTag": str,
    "UpgradeVersionTag": str,
    "LastContactThreshold": "duration",
    "ServerStabilizationTime": "duration",
}


def _same(field: str, wanted: Any, current: Any) -> bool:
    kind = _KINDS[field]
    if kind == "duration":
        if not isinstance(wanted, str):
            raise BadRequest(f"Request decode failed: {field} must be a duration string", field)
        try:
            return parse_duration(wanted) == parse_duration(current)
        except ValueError as exc:
            raise BadRequest(f"Request decode failed: {field}: {exc}", field) from None
    ok = isinstance(wanted, kind) and not (kind is int and isinstance(wanted, bool))
    if not ok or (kind is int and wanted < 0):
        what = {bool: "a boolean", int: "a non-negative integer", str: "a string"}[kind]
        raise BadRequest(f"Request decode failed: {field} must be {what}", field)
    return bool(wanted == current)


def check_configuration(body: dict[str, Any], current: dict[str, Any]) -> None:
    """Raise ``BadRequest`` naming the first field that is malformed or
    differs from the fixed settings ``current``."""
    for field in _KINDS:
        if field in body and not _same(field, body[field], current[field]):
            raise BadRequest(
                f"{field}: meshd's autopilot settings are fixed "
                f"({field} = {current[field]!r}); changing them is not supported",
                field,
            )


def state_from_health(health: dict[str, Any]) -> dict[str, Any]:
    """Consul's autopilot state document from meshd's autopilot health one."""
    servers: dict[str, Any] = {}
    leader = ""
    for s in health.get("Servers", []):
        status = "leader" if s.get("Leader") else ("voter" if s.get("Voter") else "non-voter")
        if s.get("Leader"):
            leader = s["ID"]
        servers[s["ID"]] = {
            "ID": s["ID"],
            "Name": s.get("Name", ""),
            "Address": s.get("Address", ""),
            "NodeStatus": s.get("SerfStatus", ""),
            "Version": s.get("Version", ""),
            "LastContact": s.get("LastContact", ""),
            "LastTerm": s.get("LastTerm", 0),
            "LastIndex": s.get("LastIndex", 0),
            "Healthy": bool(s.get("Healthy")),
            "StableSince": s.get("StableSince", ""),
            "ReadReplica": False,
            "Status": status,
            "Meta": {},
            "NodeType": "voter" if s.get("Voter") else "non-voter",
        }
    voters = [sid for sid, s in servers.items() if s["NodeType"] == "voter"]
    healthy_voters = sum(1 for sid in voters if servers[sid]["Healthy"])
    return {
        "Healthy": bool(health.get("Healthy")),
        "FailureTolerance": health.get("FailureTolerance", 0),
        "OptimisticFailureTolerance": max(healthy_voters - (len(voters) // 2 + 1), 0),
        "Servers": servers,
        "Leader": leader,
        "Voters": voters,
    }


def register(router: Router, agent: Agent) -> None:
    """Add this area's routes to the one route table."""

    async def set_configuration(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        body = decode_json_body(req, fields=CONFIG_FIELDS)
        if not isinstance(body, dict):
            raise BadRequest("Request decode failed: expected a JSON object")
        current = AutopilotSettings().to_json()
        cas = req.query_value("cas")
        if cas:
            try:
                expected = int(cas)
            except ValueError:
                raise BadRequest(f"Invalid cas value {cas!r}: must be an integer", "cas") from None
            if expected != current["ModifyIndex"]:
                return Response.json(False, pretty=opts.pretty)
        check_configuration(body, current)
        return Response.json(True, pretty=opts.pretty)

    async def state(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        health = await agent.server_call("Operator.AutopilotHealth", {})
        return Response.json(state_from_health(health), pretty=opts.pretty)

    router.add(
        "PUT",
        "/v1/operator/autopilot/configuration",
        set_configuration,
        name="operator.autopilot.configuration",
    )
    router.add("GET", "/v1/operator/autopilot/state", state, name="operator.autopilot.state")
