"""Node liveness without gossip (Consul's ``serfHealth``, leader-driven).

Every agent sends ``Node.Heartbeat`` to a server every ``interval``; servers
forward it to the leader. The leader keeps one deadline per node in memory
and writes to Raft only when a node's liveness changes: ``serfHealth``
critical when a node misses its TTL (which fails its services and
invalidates its sessions), passing again when it is heard from. A steady
cluster therefore costs no Raft writes here, however many nodes it has.
After a leader change every node gets a full TTL of grace, since the new
leader has heard from nobody yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from raft.transport import PeerInfo
from registry import queries as q
from registry.commands import RegisterRequest
from registry.records import HealthCheck

from ..errors import MeshdError
from ..rpc import RPCError

if TYPE_CHECKING:
    from .server import MeshServer

log = logging.getLogger("meshd.liveness")
SERF_HEALTH = "serfHealth"
ALIVE_OUTPUT = "Agent alive and reachable"
DEAD_OUTPUT = "Agent not live or unreachable"


def serf_check(node: str, status: str) -> HealthCheck:
    return HealthCheck(
        check_id=SERF_HEALTH,
        node=node,
        name="Serf Health Status",
        status=status,
        output=ALIVE_OUTPUT if status == "passing" else DEAD_OUTPUT,
    )


class LivenessTracker:
    """The leader's side: deadlines per node and the Raft writes on change."""

    def __init__(
        self,
        server: MeshServer,
        *,
        ttl: float,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.server = server
        self.ttl = ttl
        self.on_change = on_change
        self._deadline: dict[str, float] = {}
        self._term_seen: int | None = None
        self.changes = 0
        server.register_rpc("Node.Heartbeat", self._rpc_heartbeat)

    def _serf_status(self, node: str) -> str | None:
        _, checks = q.health_node_checks(self.server.store, None, node)
        for c in checks:
            if c.check_id == SERF_HEALTH:
                return str(c.status)
        return None

    async def _set(self, node: str, status: str) -> None:
        cmd = RegisterRequest(
            node=node, checks=(serf_check(node, status),), skip_node_update=True, now=time.time()
        )
        result = await self.server.write(cmd)
        if not result.ok:
            raise MeshdError(f"liveness write for {node} refused: {result.message}")
        self.changes += 1
        log.info("event=liveness_change node=%s status=%s", node, status)
        if self.on_change is not None:
            self.on_change(node, status)

    async def _rpc_heartbeat(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        node = str(args.get("node", ""))
        if not node:
            return {"ok": False}

        async def local() -> Any:
            self._deadline[node] = trio.current_time() + self.ttl
            if self._serf_status(node) == "critical":
                await self._set(node, "passing")
            return {"ok": True, "ttl": self.ttl}

        return await self.server.on_leader("Node.Heartbeat", {"node": node}, local)

    async def run(self) -> None:
        """Expire deadlines while this server leads; runs until cancelled."""
        while True:
            await trio.sleep(min(1.0, self.ttl / 4))
            if not self.server.is_leader():
                self._term_seen = None
                continue
            try:
                await self._sweep()
            except MeshdError as exc:  # a failed write is retried on the next sweep
                log.warning("event=liveness_sweep_failed reason=%s", exc)

    async def _sweep(self) -> None:
        now = trio.current_time()
        term = self.server.node.core.term
        if self._term_seen != term:
            # A new leadership: nobody has been heard from yet; grace for all.
            self._term_seen = term
            self._deadline = {}
        _, checks = q.health_checks_in_state(self.server.store, None, "any")
        for c in checks:
            if c.check_id != SERF_HEALTH:
                continue
            deadline = self._deadline.setdefault(c.node, now + self.ttl)
            if now > deadline and c.status == "passing":
                await self._set(c.node, "critical")


async def heartbeat_loop(
    call: Callable[[str, Mapping[str, Any]], Any], node: str, *, interval: float
) -> None:
    """The agent's side: tell the servers this node is alive every ``interval``.

    With ACLs on, the call acts with the agent's token (``acl.tokens.agent``),
    which needs ``node:write`` on this node, as anti-entropy does; a refusal
    is logged once (at warning) until a heartbeat gets through again, since
    the node turns critical meanwhile."""
    refused = False
    while True:
        try:
            with trio.move_on_after(interval * 2):
                await call("Node.Heartbeat", {"node": node})
                refused = False
        except MeshdError as exc:
            log.debug("event=heartbeat_failed reason=%s", exc)
        except RPCError as exc:
            if exc.code == "PermissionDenied" and not refused:
                log.warning("event=heartbeat_refused node=%s reason=%s", node, exc.message)
                refused = True
            else:
                log.debug("event=heartbeat_failed reason=%s", exc)
        except Exception as exc:  # an RPC error must not stop heartbeats
            log.debug("event=heartbeat_failed reason=%s", exc)
        await trio.sleep(interval)
