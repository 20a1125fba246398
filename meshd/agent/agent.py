"""The agent: one per host; a server too when ``server`` is set.

Composition only: it builds the pieces from the configuration and runs them
in one nursery — the server role (``server.Server``), the path to servers
for clients (``pool``), the local state and anti-entropy (``local``,
``sync``), cluster joining (``join``) and the HTTP API (``meshd.api``).
"""

from __future__ import annotations

import gc
import logging
import random
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from raft.storage import MemoryStorage, SqliteStorage, Storage
from raft.tls import (
    TLSMaterial,
    client_context,
    client_context_from_pem,
    server_context,
    server_context_from_pem,
)
from raft.types import Configuration
from raft.types import Server as RaftServer

from ..agent_tls import create_ca, create_cert
from ..config import AgentConfig
from ..errors import ConfigError, NoServersError
from ..rpc import RPCClient
from . import join
from .definitions import parse_check, parse_service
from .local import LocalState
from .pool import ClientBackend, ServerPool
from .server import Server, ServerSettings
from .sync import AntiEntropy, NodeInfo
from .wire import ReadOptions, ReadResult, WriteResult

log = logging.getLogger("meshd.agent")


def _node_id(config: AgentConfig) -> str:
    if config.node_id:
        return config.node_id
    if config.data_dir is None:
        return str(uuid.uuid4())
    path = Path(config.data_dir) / "node-id"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    node_id = str(uuid.uuid4())
    path.write_text(node_id)
    return node_id


class Agent:
    """Run with ``await nursery.start(agent.run)``; ``started()`` comes once
    the HTTP API answers and (for --dev) a leader is elected."""

    def __init__(self, config: AgentConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.node_id = _node_id(config)
        self.node_name = config.node_name or socket.gethostname()
        self.datacenter = config.datacenter
        self.started_at = time.time()
        data_dir = Path(config.data_dir) if config.data_dir else None
        self.local = LocalState(self.node_name, data_dir)
        self.server: Server | None = None
        self.pool: ServerPool | None = None
        self.backend: Any = None
        self.sync: AntiEntropy | None = None
        self.http_addresses: list[tuple[str, int]] = []
        self.rpc_address = f"{config.advertise_addr}:{config.ports.server}"
        self._server_ssl, self._client_ssl = self._tls_contexts()
        self._nursery: trio.Nursery | None = None
        self.shutdown = trio.Event()
        self.left = False

    # ------------------------------------------------------------ building

    def _tls_contexts(self) -> tuple[Any, Any]:
        cfg = self.config
        tls = cfg.tls.internal_rpc
        if tls.ca_file and tls.cert_file and tls.key_file:
            files = (tls.ca_file, tls.cert_file, tls.key_file)
            return server_context(*files), client_context(*files)
        if not cfg.dev and cfg.server:
            raise ConfigError(None, "tls.defaults", "a server needs ca_file, cert_file, key_file")
        # --dev (and clients without certificates, which then cannot reach
        # servers that verify them): a throwaway CA made at start.
        ca_cert, ca_key = create_ca(domain=cfg.domain)
        cert, key = create_cert(
            ca_cert,
            ca_key,
            kind="server" if cfg.server else "client",
            dc=cfg.datacenter,
            domain=cfg.domain,
            ips=[cfg.advertise_addr] if cfg.advertise_addr else (),
        )
        material = TLSMaterial(ca_cert, cert, key)
        return server_context_from_pem(material), client_context_from_pem(material)

    def _storage(self) -> Storage:
        if self.config.data_dir is None:
            return MemoryStorage()
        return SqliteStorage(Path(self.config.data_dir) / "raft")

    def _server_settings(self) -> ServerSettings:
        cfg = self.config
        multiplier = cfg.performance.raft_multiplier
        return ServerSettings(
            node_id=self.node_id,
            node_name=self.node_name,
            datacenter=cfg.datacenter,
            domain=cfg.domain,
            bind=(cfg.bind_addr, cfg.ports.server),
            advertise=self.rpc_address,
            # Consul's timing at raft_multiplier 1: 1 s election timeout.
            tick_interval=0.1 * multiplier,
            election_ticks=10,
            snapshot_threshold=cfg.raft_snapshot_threshold,
            trailing_logs=cfg.raft_trailing_logs,
            rpc_hold_timeout=cfg.performance.rpc_hold_timeout,
        )

    def node_info(self) -> NodeInfo:
        cfg = self.config
        return NodeInfo(
            name=self.node_name,
            id=self.node_id,
            address=cfg.advertise_addr,
            datacenter=cfg.datacenter,
            tagged_addresses={"lan": cfg.advertise_addr, "wan": cfg.advertise_addr},
            meta=dict(cfg.node_meta),
        )

    def _load_definitions(self) -> None:
        for i, raw in enumerate(self.config.services):
            try:
                self.local.add_service(parse_service(raw, node=self.node_name), persist=False)
            except Exception as exc:
                raise ConfigError(None, f"services[{i}]", str(exc)) from exc
        for i, raw in enumerate(self.config.checks):
            try:
                self.local.add_check(parse_check(raw, node=self.node_name), persist=False)
            except Exception as exc:
                raise ConfigError(None, f"checks[{i}]", str(exc)) from exc
        restored = self.local.load()
        if restored:
            log.info("event=local_state_restored count=%d", restored)

    # -------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from ..api.routes import build_app  # the API imports the agent's types
        from ..http import open_http_listeners, serve_http

        cfg = self.config
        self._load_definitions()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if cfg.server:
                bootstrap = None
                if cfg.dev or cfg.bootstrap or cfg.bootstrap_expect == 1:
                    bootstrap = Configuration((RaftServer(self.node_id, self.rpc_address),))
                self.server = Server(
                    self._server_settings(),
                    self._storage(),
                    self._server_ssl,
                    self._client_ssl,
                    bootstrap=bootstrap,
                    rng=self.rng,
                )
                await nursery.start(self.server.run)
                self.backend = self.server
            rpc = RPCClient(
                nursery,
                self._client_ssl,
                server_name=f"server.{cfg.datacenter}.{cfg.domain}",
                local_id=self.node_id,
            )
            self.pool = ServerPool(rpc, self.rng)
            if self.server is not None:
                self.pool.add([self.rpc_address])
            else:
                self.backend = ClientBackend(self.pool)
            self.sync = AntiEntropy(
                self.local,
                self.backend,
                self.node_info(),
                rng=self.rng,
                cluster_size=self._cluster_size,
            )
            nursery.start_soon(self._join_loop, rpc)
            if self.server is not None and cfg.dev:
                await self.server.node.wait_for_leader(5)
            nursery.start_soon(self.sync.run)
            gc.freeze()  # long-lived startup objects leave the collector's young generations
            app = build_app(self)
            addrs = [(host, cfg.ports.http) for host in cfg.client_addr]
            listeners = await open_http_listeners(addrs)
            self.http_addresses = [tuple(lst.socket.getsockname()[:2]) for lst in listeners]
            await nursery.start(
                lambda task_status: serve_http(
                    listeners,
                    app,
                    per_client_max_connections=cfg.limits.http_max_conns_per_client,
                    task_status=task_status,
                )
            )
            log.info(
                "event=agent_started node=%s id=%s server=%s http=%s rpc=%s",
                self.node_name,
                self.node_id,
                cfg.server,
                self.http_addresses,
                self.rpc_address,
            )
            task_status.started()
            await self.shutdown.wait()
            nursery.cancel_scope.cancel()

    def _cluster_size(self) -> int:
        return 1

    async def _join_loop(self, rpc: RPCClient) -> None:
        """Find servers through retry_join until the agent belongs to a cluster."""
        cfg = self.config
        addresses = [f"{j.host}:{j.port}" for j in (*cfg.start_join, *cfg.retry_join)]
        delay = 0.5
        while True:
            if addresses:
                peers = await join.join_servers(rpc, addresses, datacenter=cfg.datacenter)
                assert self.pool is not None
                self.pool.add(p.address for p in peers)
                if self.server is not None:
                    await self._server_join_step(rpc, peers)
                elif peers:
                    await self.pool.refresh()
                    if self.sync is not None:
                        self.sync.trigger_full()
            await trio.sleep(delay)
            delay = min(delay * 2, cfg.retry_interval)

    async def _server_join_step(self, rpc: RPCClient, peers: list[join.Peer]) -> None:
        assert self.server is not None
        for p in peers:
            self.server.node.learn_peer(p.node_id, p.address)
        st = self.server.node.status().core
        if st.configuration.servers:
            return  # already part of a configuration
        leaders = {p.leader for p in peers if p.leader}
        for leader in leaders:
            if await join.ask_leader_to_add(rpc, leader, self.node_id, self.rpc_address):
                return
        expect = self.config.bootstrap_expect
        if expect > 1:
            me = join.Peer(
                self.node_id, self.node_name, self.datacenter, self.rpc_address, None, False
            )
            conf = join.bootstrap_set(me, peers, expect)
            if conf is not None:
                log.info("event=bootstrap servers=%s", [s.address for s in conf.servers])
                await self.server.node.bootstrap(conf)

    # ------------------------------------------------------ API delegates

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        return await self.backend.read(name, args, opts)  # type: ignore[no-any-return]

    async def write(self, cmd: Any) -> WriteResult:
        return await self.backend.write(cmd)  # type: ignore[no-any-return]

    def known_servers(self) -> list[str]:
        if self.pool is None:
            raise NoServersError()
        return self.pool.servers()

    async def leave(self) -> None:
        """Graceful leave: a server removes itself from Raft when quorum allows;
        every agent deregisters its node; then the agent stops."""
        self.left = True
        if self.server is not None and self.server.is_leader():
            voters = self.server.node.core.configuration.voters()
            if len(voters) > 1:
                try:
                    await self.server.node.transfer_leadership()
                except Exception as exc:
                    log.warning("event=leave_transfer_failed reason=%s", exc)
        self.shutdown.set()
