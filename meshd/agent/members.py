"""Cluster members as ``/v1/agent/members`` shows them (Consul's Serf member shape).

meshd has no gossip pool, so the member list is computed on a server from
what it replicates: a catalog node registered by an agent (its node meta has
``consul-network-segment``, as Consul agents write it; nodes registered
through /v1/catalog/register lack it and are not members) or one with a
liveness record is a member, and every server in the Raft configuration is
one with ``role=consul`` tags (matched to its catalog node by node ID).
Status follows Serf's numbers: 1 alive, 3 left (liveness record "left"),
4 failed (liveness "failed" or a critical ``serfHealth`` check, or a server
the leader has not heard from).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from raft.types import Configuration
from registry.records import SERF_HEALTH, HealthCheck, Liveness, Node

from ..version import PROTOCOL_MAX, PROTOCOL_MIN, PROTOCOL_VERSION, RAFT_PROTOCOL

__all__ = [
    "ALIVE",
    "FAILED",
    "LEFT",
    "SEGMENT_META",
    "MemberInfo",
    "cluster_members",
    "member_json",
]

ALIVE, LEAVING, LEFT, FAILED = 1, 2, 3, 4
SEGMENT_META = "consul-network-segment"  # node meta every agent registers itself with
SERF_LAN_PORT = 8301  # what clients show as their port: Consul's serf_lan default
_PROTOCOL = {
    "ProtocolMin": 1,
    "ProtocolMax": 5,
    "ProtocolCur": 2,
    "DelegateMin": 2,
    "DelegateMax": 5,
    "DelegateCur": 4,
}


@dataclass(frozen=True)
class MemberInfo:
    """What the tags of one member are built from."""

    datacenter: str
    version: str
    acls: bool = False
    bootstrap_expect: int = 0


def _tags(info: MemberInfo, node_id: str, server_port: int | None) -> dict[str, str]:
    tags = {
        "role": "node",
        "dc": info.datacenter,
        "id": node_id,
        "segment": "",
        "vsn": str(PROTOCOL_VERSION),
        "vsn_min": str(PROTOCOL_MIN),
        "vsn_max": str(PROTOCOL_MAX),
        "build": f"{info.version}:meshd",
        "acls": "1" if info.acls else "0",
    }
    if server_port is not None:
        tags.update(
            role="consul", port=str(server_port), raft_vsn=str(RAFT_PROTOCOL), wan_join_port="8302"
        )
        if info.bootstrap_expect:
            tags["expect"] = str(info.bootstrap_expect)
    return tags


def member_json(
    name: str,
    addr: str,
    info: MemberInfo,
    *,
    node_id: str,
    server_address: str | None = None,
    status: int = ALIVE,
) -> dict[str, Any]:
    """One member; ``server_address`` (``host:port`` of its RPC port) makes it a server."""
    port = SERF_LAN_PORT
    server_port: int | None = None
    if server_address is not None:
        host, _, port_text = server_address.rpartition(":")
        server_port = port = int(port_text) if port_text.isdigit() else 8300
        addr = addr or host.strip("[]")
    return {
        "Name": name,
        "Addr": addr,
        "Port": port,
        "Tags": _tags(info, node_id, server_port),
        "Status": status,
        **_PROTOCOL,
    }


def cluster_members(
    nodes: Iterable[Node],
    critical: Iterable[HealthCheck],
    liveness: Iterable[Liveness],
    conf: Configuration,
    info: MemberInfo,
    *,
    names: Mapping[str, str],
    unreachable: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Every member: catalog nodes, then Raft servers missing from the catalog."""
    failed = {c.node for c in critical if c.check_id == SERF_HEALTH}
    verdicts = {r.node: r.status for r in liveness}
    down = set(unreachable)
    servers = {s.id: s for s in conf.servers}
    out = []
    seen: set[str] = set()
    for n in sorted(nodes, key=lambda n: n.node):
        srv = servers.get(n.id) if n.id else None
        if srv is None and SEGMENT_META not in n.meta and n.node not in verdicts:
            continue  # an external node, registered through the catalog API
        status = ALIVE
        if verdicts.get(n.node) == "left":
            status = LEFT
        elif n.node in failed or verdicts.get(n.node) == "failed" or (srv and srv.id in down):
            status = FAILED
        out.append(
            member_json(
                n.node,
                n.address,
                info,
                node_id=n.id,
                server_address=srv.address if srv else None,
                status=status,
            )
        )
        if srv is not None:
            seen.add(srv.id)
    for srv in conf.servers:
        if srv.id in seen:
            continue
        out.append(
            member_json(
                names.get(srv.id, srv.id),
                "",
                info,
                node_id=srv.id,
                server_address=srv.address,
                status=FAILED if srv.id in down else ALIVE,
            )
        )
    return out
