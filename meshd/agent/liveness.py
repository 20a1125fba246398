"""Node liveness without gossip (Consul's ``serfHealth``, leader-driven).

Every agent sends ``Node.Heartbeat`` to a server every ``interval``; servers
forward it to the leader. The leader keeps one deadline per node in memory
and writes to Raft only when a node's liveness changes: ``serfHealth``
critical when a node misses its TTL (which fails its services and
invalidates its sessions), passing again when it is heard from. A steady
cluster therefore costs no Raft writes here, however many nodes it has.
After a leader change every node gets a full TTL of grace, since the new
leader has heard from nobody yet.

A follower does not forward each heartbeat on its own: the heartbeats it
receives within ``BATCH_WINDOW`` go to the leader as one
``Node.HeartbeatBatch`` call (``HeartbeatBatcher``), so the leader's RPC
load grows with the number of servers, not of agents (2,000 agents at one
heartbeat a second were 2,000 forwarded calls a second before).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
BATCH_WINDOW = 0.02  # seconds a follower gathers heartbeats before forwarding
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


class HeartbeatBatcher:
    """Gathers the heartbeats a follower receives during ``window`` into one
    ``forward(nodes)`` call; every caller gets that call's answer, or its
    exception. Start ``run`` in a nursery first."""

    def __init__(
        self, forward: Callable[[Sequence[str]], Awaitable[Any]], window: float = BATCH_WINDOW
    ) -> None:
        self._forward = forward
        self._window = window
        self._nodes: set[str] = set()
        self._done = trio.Event()
        self._outcome: list[Any] = []
        self._wake = trio.Event()
        self.batches = 0

    async def beat(self, node: str) -> Any:
        self._nodes.add(node)
        done, outcome = self._done, self._outcome
        self._wake.set()
        await done.wait()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await trio.sleep(self._window)
            nodes, done, outcome = sorted(self._nodes), self._done, self._outcome
            self._nodes, self._done, self._outcome = set(), trio.Event(), []
            self._wake = trio.Event()
            self.batches += 1
            try:
                outcome.append(await self._forward(nodes))
            except Exception as exc:  # every waiter of this batch gets it
                outcome.append(exc)
            done.set()


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
        self.batcher = HeartbeatBatcher(self._forward_batch)
        server.register_rpc("Node.Heartbeat", self._rpc_heartbeat)
        server.register_rpc("Node.HeartbeatBatch", self._rpc_heartbeat_batch)

    def _serf_status(self, node: str) -> str | None:
        _, checks = q.health_node_checks(self.server.store, None, node)
        for c in checks:
            if c.check_id == SERF_HEALTH:
                return str(c.status)
        return None

    async def _set(self, node: str, status: str) -> None:
        cmd = RegisterRequest(node=node, checks=(serf_check(node, status),), skip_node_update=True)
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

        if self.server.is_leader():
            await self._heard((node,))
            return {"ok": True, "ttl": self.ttl}
        self.server.check_forwarded(args)  # one forwarded singly must not hop again
        result = await self.batcher.beat(node)
        return {"ok": True, "ttl": float(result.get("ttl", self.ttl))}

    async def _heard(self, nodes: Sequence[str]) -> None:
        """The leader's side of heartbeats from ``nodes``."""
        deadline = trio.current_time() + self.ttl
        for node in nodes:
            self._deadline[node] = deadline
            if self._serf_status(node) == "critical":
                try:
                    await self._set(node, "passing")
                except MeshdError as exc:  # its next heartbeat tries again
                    log.warning("event=liveness_write_failed node=%s reason=%s", node, exc)

    async def _forward_batch(self, nodes: Sequence[str]) -> Any:
        async def local() -> Any:
            await self._heard(nodes)
            return {"ok": True, "ttl": self.ttl}

        return await self.server.on_leader("Node.HeartbeatBatch", {"nodes": list(nodes)}, local)

    async def _rpc_heartbeat_batch(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        """A follower's gathered heartbeats (server to server only)."""
        self.server.check_forwarded(args)
        nodes = [str(n) for n in args.get("nodes") or () if n]
        await self._heard(nodes)
        return {"ok": True, "ttl": self.ttl}

    async def run(self) -> None:
        """Forward followers' heartbeat batches, and expire deadlines while
        this server leads; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.batcher.run)
            await self._expire()

    async def _expire(self) -> None:
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
