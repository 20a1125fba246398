"""The ``consul`` service: every server in the catalog as an instance of it.

Consul's leader reconciles its server members into the catalog
(agent/consul/leader.go ``handleAliveMember``): each server's node carries
service ``consul`` with ID ``consul`` and the server RPC port, so clients
find the servers through ``/v1/catalog/service/consul``,
``/v1/health/service/consul`` and DNS ``consul.service.consul``. meshd has no
gossip: the servers are the Raft configuration, matched to their catalog
nodes by node ID (the agent registers its own node; anti-entropy leaves
this service alone, as Consul's local state does). A server removed from
the configuration loses the service.

``plan`` is the pure reconciliation; ``ConsulServiceReconciler`` runs it on
the leader about once a second and writes the difference through Raft.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import trio

from raft.types import Server as RaftServer
from raft.types import Suffrage
from registry.commands import Command, DeregisterRequest, RegisterRequest
from registry.records import Node, ServiceInstance, Weights

from ..errors import MeshdError

if TYPE_CHECKING:
    from .server import MeshServer

CONSUL_SERVICE = "consul"  # Consul's structs.ConsulServiceName and ConsulServiceID
RAFT_VERSION = "3"


def server_service(server: RaftServer, version: str) -> ServiceInstance:
    """The ``consul`` instance for ``server`` (its Meta as Consul writes it)."""
    _, _, port_text = server.address.rpartition(":")
    non_voter = "false" if server.suffrage == Suffrage.VOTER else "true"
    return ServiceInstance(
        service=CONSUL_SERVICE,
        id=CONSUL_SERVICE,
        port=int(port_text) if port_text.isdigit() else 8300,
        weights=Weights(passing=1, warning=1),
        meta={
            "non_voter": non_voter,
            "read_replica": non_voter,
            "raft_version": RAFT_VERSION,
            "serf_protocol_current": "2",
            "serf_protocol_min": "1",
            "serf_protocol_max": "5",
            "version": version,
        },
    )


def _same(a: ServiceInstance, b: ServiceInstance) -> bool:
    return (a.service, a.port, a.address, a.tags, a.meta, a.weights) == (
        b.service,
        b.port,
        b.address,
        b.tags,
        b.meta,
        b.weights,
    )


def plan(
    servers: Iterable[RaftServer],
    nodes: Iterable[Node],
    current: Mapping[str, ServiceInstance],
    *,
    version: str,
) -> list[Command]:
    """The writes that make ``current`` (node name -> its ``consul`` instance)
    match the servers: a register for each server whose catalog node lacks
    it or has it out of date; a deregister where a node that is no server
    (any more) still has one this reconciler wrote. A server whose node is
    not in the catalog yet is left for a later pass."""
    by_id = {n.id: n for n in nodes if n.id}
    out: list[Command] = []
    server_nodes: set[str] = set()
    now = time.time()
    for server in servers:
        node = by_id.get(server.id)
        if node is None:
            continue
        server_nodes.add(node.node)
        want = server_service(server, version)
        have = current.get(node.node)
        if have is None or not _same(have, want):
            out.append(
                RegisterRequest(node=node.node, service=want, skip_node_update=True, now=now)
            )
    for node_name, svc in sorted(current.items()):
        if node_name not in server_nodes and "raft_version" in svc.meta:
            out.append(DeregisterRequest(node=node_name, service_id=CONSUL_SERVICE, now=now))
    return out


class ConsulServiceReconciler:
    """Runs ``plan`` on the leader (``MeshServer.while_leader``)."""

    def __init__(self, server: MeshServer, *, version: str) -> None:
        self.server = server
        self.version = version
        self._lock = trio.Lock()

    def pending(self) -> list[Command]:
        """The writes the current state needs."""
        store = self.server.store
        current = {
            s.node: s
            for s in store.catalog.services.by("name", CONSUL_SERVICE).values()
            if s.id == CONSUL_SERVICE
        }
        servers = self.server.node.core.configuration.servers
        nodes = store.catalog.nodes.sorted_records()
        return plan(servers, nodes, current, version=self.version)

    async def step(self) -> None:
        for cmd in self.pending():
            result = await self.server.write(cmd)
            if not result.ok:
                raise MeshdError(f"consul service write refused: {result.message}")

    async def run(self) -> None:
        await self.server.while_leader(
            self.step, event="consul_service", expected=(MeshdError,), lock=self._lock
        )
