"""Cluster members as ``/v1/agent/members`` shows them (Consul's Serf member shape).

meshd has no gossip pool, so the member list is computed on a server from
what it replicates: a catalog node registered by an agent (its node meta has
``consul-network-segment``, as Consul agents write it; nodes registered
through /v1/catalog/register lack it and are not members) or one with a
liveness record is a member, and every server in the Raft configuration is
one with ``role=consul`` tags (matched to its catalog node by node ID).
Status follows Serf's numbers: 1 alive, 2 leaving (a live member that was
force-left: Consul's leader marks it leaving and the member refutes it; here
the mark lasts ``LEAVING_HOLD`` seconds, kept in the leader's memory), 3 left
(liveness record "left"), 4 failed (liveness "failed" or a critical
``serfHealth`` check, or a server the leader has not heard from).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from raft.types import Configuration
from registry.records import SERF_HEALTH, HealthCheck, Liveness, Node

from ..version import BATCH_META, PROTOCOL_MAX, PROTOCOL_MIN, PROTOCOL_VERSION, RAFT_PROTOCOL

__all__ = [
    "ALIVE",
    "BATCH_META",
    "FAILED",
    "LEAVING",
    "LEAVING_WATCH",
    "LEFT",
    "SEGMENT_META",
    "LeavingMarks",
    "MemberInfo",
    "batch_capable",
    "cluster_members",
    "member_json",
]

ALIVE, LEAVING, LEFT, FAILED = 1, 2, 3, 4
SEGMENT_META = "consul-network-segment"  # node meta every agent registers itself with
SERF_LAN_PORT = 8301  # what clients show as their port: Consul's serf_lan default
# How long a force-left live member shows as leaving: about as long as a
# Consul member takes to refute the leave intent and show alive again.
LEAVING_HOLD = 5.0
# How long the leader watches a force-left live member for failing (it has
# then left, and is deregistered): past several liveness TTLs.
LEAVING_WATCH = 60.0
# How long a member that left stays listed (Consul reaps left members after 72 h).
LEFT_REAP = 72 * 3600.0
MAX_LEFT_SHOWN = 1024
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


class LeavingMarks:
    """Live members force-left recently, by node name, until ``hold`` passes;
    and members that left (force-left when failed), shown with status 3
    until Consul's reap time passes although their catalog node is gone.

    Times are the caller's clock (``trio.current_time()`` on the leader).
    """

    def __init__(self, hold: float = LEAVING_HOLD, reap: float = LEFT_REAP) -> None:
        self.hold = hold
        self.reap = reap
        self._until: dict[str, float] = {}
        self._left: dict[str, tuple[dict[str, Any], float]] = {}

    def left(self, member: Mapping[str, Any], now: float) -> None:
        """``member`` (its JSON) has left: keep showing it, status 3."""
        if len(self._left) >= MAX_LEFT_SHOWN:
            oldest = min(self._left, key=lambda n: self._left[n][1])
            del self._left[oldest]
        self._left[str(member["Name"])] = ({**member, "Status": LEFT}, now + self.reap)
        self._until.pop(str(member["Name"]), None)

    def left_members(self, now: float, present: Iterable[str]) -> list[dict[str, Any]]:
        """Members that left and are not back (a name in ``present`` is back)."""
        back = set(present)
        self._left = {n: v for n, v in self._left.items() if v[1] > now and n not in back}
        return [m for m, _ in self._left.values()]

    def mark(self, node: str, now: float) -> None:
        """``node`` was force-left while alive: show it leaving from ``now``."""
        self._until[node] = now + self.hold

    def current(self, now: float) -> set[str]:
        """The nodes still shown as leaving at ``now`` (expired marks go)."""
        self._until = {n: t for n, t in self._until.items() if t > now}
        return set(self._until)


def is_live(node: str, critical: Iterable[HealthCheck], liveness: Iterable[Liveness]) -> bool:
    """Whether ``node`` is a member the leader considers alive: no critical
    ``serfHealth`` check and no failed or left liveness record."""
    if any(c.node == node and c.check_id == SERF_HEALTH for c in critical):
        return False
    return not any(r.node == node and r.status in ("failed", "left") for r in liveness)


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


def batch_capable(voters: Iterable[str], self_id: str, nodes: Iterable[Node]) -> bool:
    """Whether every voter other than ``self_id`` is known to apply a
    ForwardedBatch: its catalog node (matched by node ID) carries
    ``BATCH_META``. A voter without a catalog node yet is unknown: no."""
    others = set(voters) - {self_id}
    if not others:
        return True
    able = {n.id for n in nodes if n.id in others and n.meta.get(BATCH_META) == "1"}
    return able == others


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
    leaving: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Every member: catalog nodes, then Raft servers missing from the catalog;
    the live ones among ``leaving`` have status 2."""
    failed = {c.node for c in critical if c.check_id == SERF_HEALTH}
    verdicts = {r.node: r.status for r in liveness}
    down = set(unreachable)
    going = set(leaving)
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
        elif n.node in going:
            status = LEAVING
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
        if srv is not None and n.meta.get(BATCH_META) == "1":
            out[-1]["Tags"]["fb"] = "1"
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
