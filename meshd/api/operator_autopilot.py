"""PUT /v1/operator/autopilot/configuration and GET /v1/operator/autopilot/state
(https://developer.hashicorp.com/consul/api-docs/operator/autopilot).

The configuration is replicated state (``AutopilotConfigSet`` through
Raft; GET reads it back in ``operator``). A PUT with Consul's body is
validated field by field (400 naming the field), stored, and answers
``true``; with ``?cas=<ModifyIndex>`` it answers ``false`` when the stored
configuration changed meanwhile. The leader's health rule uses
LastContactThreshold, MaxTrailingLogs and ServerStabilizationTime; meshd
has no dead-server cleanup, redundancy zones or upgrade migrations, so the
other settings are stored and returned only. The state document is
Consul's shape, derived from the leader's autopilot health.
"""

from __future__ import annotations

from typing import Any, Protocol

from registry.commands import AutopilotConfigSet
from registry.errors import ErrorCode
from registry.records import AutopilotConfig

from ..durations import parse_duration
from ..http import BadRequest, JSONFields, QueryOptions, Request, Response, decode_json_body
from . import ports
from .common import check_dc


class Ports(ports.Registry, ports.Servers, Protocol):
    """What this module needs from the agent."""


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


def _field(body: dict[str, Any], name: str) -> Any:
    """``body[name]`` validated as Consul's struct field (absent: Go's zero value)."""
    kind = _KINDS[name]
    if kind == "duration":
        value = body.get(name, "0s")
        if not isinstance(value, str):
            raise BadRequest(
                f"Error parsing autopilot config: {name} must be a duration string", name
            )
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise BadRequest(f"Error parsing autopilot config: {name}: {exc}", name) from None
        if seconds < 0:
            raise BadRequest(f"Error parsing autopilot config: {name} must not be negative", name)
        return seconds
    value = body.get(name, kind())
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok or (kind is int and value < 0):
        what = {bool: "a boolean", int: "a non-negative integer", str: "a string"}[kind]
        raise BadRequest(f"Error parsing autopilot config: {name} must be {what}", name)
    return value


def config_from_body(body: dict[str, Any]) -> AutopilotConfig:
    """The configuration a PUT body asks for. Like Consul's handler, a field
    the body leaves out takes its zero value (false, 0, "0s", "")."""
    return AutopilotConfig(
        cleanup_dead_servers=_field(body, "CleanupDeadServers"),
        last_contact_threshold=_field(body, "LastContactThreshold"),
        max_trailing_logs=_field(body, "MaxTrailingLogs"),
        min_quorum=_field(body, "MinQuorum"),
        server_stabilization_time=_field(body, "ServerStabilizationTime"),
        redundancy_zone_tag=_field(body, "RedundancyZoneTag"),
        disable_upgrade_migration=_field(body, "DisableUpgradeMigration"),
        upgrade_version_tag=_field(body, "UpgradeVersionTag"),
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


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def set_configuration(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    body = decode_json_body(req, fields=CONFIG_FIELDS)
    if not isinstance(body, dict):
        raise BadRequest("Error parsing autopilot config: expected a JSON object")
    config = config_from_body(body)
    cas: int | None = None
    if "cas" in req.query:
        raw = req.query_value("cas") or ""
        if not raw.isdigit():
            raise BadRequest(f"Error decoding cas value: {raw!r} is not an integer", "cas")
        cas = int(raw)
    result = await p.write(AutopilotConfigSet(config=config, cas=cas))
    if result.ok:
        return Response.json(True, pretty=opts.pretty)
    if result.error == ErrorCode.CAS_CONFLICT:
        return Response.json(False, pretty=opts.pretty)
    raise BadRequest(f"Error parsing autopilot config: {result.message}")


async def state(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    health = await p.server_call("Operator.AutopilotHealth", {})
    return Response.json(state_from_health(health), pretty=opts.pretty)
