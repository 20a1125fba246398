"""Cluster membership as this agent sees it (Consul's Serf side, without
gossip): finding servers through start_join/retry_join until the agent belongs
to a cluster (joining a server's Raft configuration, or bootstrapping with
bootstrap_expect), PUT /v1/agent/join, the member list (the leader's, or what
this agent knows without one), this agent's own member entry, and the
leader/peers of /v1/status.

The agent owns one ``Membership``; it reads the agent's parts (server, pool,
RPC client, anti-entropy), which are settled only once the agent runs,
through the ``MembershipHost`` protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import trio

from ..config import AgentConfig
from ..config.addresses import join_address
from ..config.values import Invalid
from ..errors import Internal, InvalidArgument, NoLeaderError, NoServersError, RequestError
from ..rpc import RPCClient
from . import join
from .local import LocalState
from .members import MemberInfo, member_json
from .peer_wait import PeerWait, known_members
from .pool import ServerPool
from .server import MeshServer
from .sync import AntiEntropy

log = logging.getLogger("meshd.agent")

# How long PUT /v1/agent/join waits for this node to be in the catalog.
JOIN_SYNC_TIMEOUT = 10.0


class MembershipHost(Protocol):
    """What membership reads of the agent."""

    @property
    def config(self) -> AgentConfig: ...
    @property
    def node_id(self) -> str: ...
    @property
    def node_name(self) -> str: ...
    @property
    def datacenter(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def rpc_address(self) -> str: ...
    @property
    def local(self) -> LocalState: ...
    @property
    def peer_wait(self) -> PeerWait: ...
    @property
    def server(self) -> MeshServer | None: ...
    @property
    def pool(self) -> ServerPool | None: ...
    @property
    def rpc(self) -> RPCClient | None: ...
    @property
    def sync(self) -> AntiEntropy | None: ...

    async def server_call(
        self, method: str, args: Mapping[str, Any], *, timeout: float = 60.0
    ) -> Any: ...

    def leadership_ready(self) -> bool: ...

    def log_peer_wait(self) -> None: ...


class Membership:
    def __init__(self, agent: MembershipHost) -> None:
        self._agent = agent

    async def join_loop(self, rpc: RPCClient) -> None:
        """Find servers through retry_join until the agent belongs to a cluster."""
        cfg = self._agent.config
        addresses = [f"{j.host}:{j.port}" for j in (*cfg.start_join, *cfg.retry_join)]
        delay = 0.5
        while True:
            if addresses:
                failures: dict[str, str] = {}
                peers = await join.join_servers(
                    rpc, addresses, datacenter=cfg.datacenter, failures=failures
                )
                self._agent.peer_wait.record(peers, failures)
                assert self._agent.pool is not None
                self._agent.pool.add(p.address for p in peers)
                if self._agent.server is not None:
                    self._agent.server.node_names.update((p.node_id, p.node) for p in peers)
                    await self._server_join_step(rpc, peers)
                elif peers:
                    await self._agent.pool.refresh()
                    if self._agent.sync is not None:
                        self._agent.sync.trigger_full()
            self._agent.log_peer_wait()
            await trio.sleep(delay)
            delay = min(delay * 2, cfg.retry_interval)

    async def _server_join_step(self, rpc: RPCClient, peers: list[join.Peer]) -> None:
        assert self._agent.server is not None
        for p in peers:
            self._agent.server.node.learn_peer(p.node_id, p.address)
        st = self._agent.server.node.status().core
        if st.configuration.servers:
            return  # already part of a configuration
        leaders = {p.leader for p in peers if p.leader}
        for leader in leaders:
            if await join.ask_leader_to_add(
                rpc, leader, self._agent.node_id, self._agent.rpc_address
            ):
                return
        expect = self._agent.config.bootstrap_expect
        if expect > 1:
            me = join.Peer(
                self._agent.node_id,
                self._agent.node_name,
                self._agent.datacenter,
                self._agent.rpc_address,
                None,
                False,
            )
            conf = join.bootstrap_set(me, peers, expect)
            if conf is not None:
                log.info("event=bootstrap servers=%s", [s.address for s in conf.servers])
                await self._agent.server.node.bootstrap(conf)

    async def status_leader(self) -> str:
        """The leader's RPC address as this agent knows it ("" when none, and
        on a server also while the leader is still establishing leadership)."""
        if self._agent.server is not None:
            return (
                (self._agent.server.leader_address() or "")
                if self._agent.leadership_ready()
                else ""
            )
        return str(await self._agent.server_call("Status.Leader", {}) or "")

    async def status_peers(self) -> list[str]:
        """RPC addresses of the servers in the Raft configuration."""
        if self._agent.server is not None:
            return [s.address for s in self._agent.server.node.core.configuration.servers]
        return [str(p) for p in await self._agent.server_call("Status.Peers", {}) or []]

    def member_info(self) -> MemberInfo:
        cfg = self._agent.config
        return MemberInfo(
            cfg.datacenter, self._agent.version, cfg.acl.enabled, cfg.bootstrap_expect
        )

    def self_member(self) -> dict[str, Any]:
        """This agent as a member of the cluster (``Member`` of /v1/agent/self)."""
        return member_json(
            self._agent.node_name,
            self._agent.config.advertise_addr,
            self.member_info(),
            node_id=self._agent.node_id,
            server_address=self._agent.rpc_address if self._agent.server is not None else None,
        )

    async def members(self) -> list[dict[str, Any]]:
        """Every cluster member (Consul's Serf member JSON), as the leader sees
        it; without a leader, what this agent knows (``known_members``)."""
        if self._agent.server is None or self._agent.server.leader_address() is not None:
            try:
                return list(await self._agent.server_call("Agent.Members", {}, timeout=5.0))
            except (NoLeaderError, NoServersError) as exc:
                log.debug("event=members_local reason=%s", exc)
            except RequestError as exc:
                if exc.caller_fault:
                    raise
                log.debug("event=members_local reason=%s", exc)
        servers = {}
        if self._agent.server is not None:
            conf = self._agent.server.node.core.configuration
            servers = {s.id: s.address for s in conf.servers}
        return known_members(self.self_member(), self._agent.peer_wait, self.member_info(), servers)

    async def join(self, address: str) -> None:
        """Join the cluster through the server at ``address`` (``host[:port]``,
        port 8300 by default). Raises ``InvalidArgument`` for a bad address and
        ``Internal`` when no server of this datacenter answers there."""
        try:
            target = str(join_address(address))
        except Invalid as exc:
            raise InvalidArgument(f"Invalid address {address!r}: {exc.reason}", "address") from None
        if self._agent.rpc is None or self._agent.pool is None:
            raise Internal("agent: not running yet")
        peer = await join.ping(self._agent.rpc, target)
        if peer is None:
            raise Internal(f"agent: failed to join {target}: no meshd server answered")
        if peer.datacenter != self._agent.datacenter:
            raise Internal(
                f"agent: failed to join {target}: it is in datacenter {peer.datacenter!r}, "
                f"not {self._agent.datacenter!r}",
            )
        self._agent.pool.add([peer.address])
        if self._agent.server is not None:
            self._agent.server.node_names[peer.node_id] = peer.node
            await self._server_join_step(self._agent.rpc, [peer])
        else:
            await self._agent.pool.refresh()
        if self._agent.sync is not None:
            # Consul answers once the exchange is done: the servers know this
            # member (its catalog node) when the call returns.
            self._agent.sync.trigger_full()
            if not await self._agent.sync.wait_synced(self._agent.local.version, JOIN_SYNC_TIMEOUT):
                log.warning("event=join_sync_pending address=%s", target)
        log.info("event=joined address=%s server=%s", target, peer.node)
