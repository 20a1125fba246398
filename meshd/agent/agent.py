"""The agent: one per host; a server too when ``server`` is set.

Composition only: it builds the pieces from the configuration and runs them
in one nursery — the server role (``server.MeshServer``), the path to servers
for clients (``pool``), the local state and anti-entropy (``local``,
``sync``), cluster joining (``join``) and the HTTP API (``meshd.api``).
"""

from __future__ import annotations

import functools
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from raft.storage import MemoryStorage, Storage
from raft.tls import (
    TLSConfigError,
    TLSMaterial,
    client_context,
    client_context_from_pem,
    server_context,
    server_context_from_pem,
)
from raft.transport import source_address
from raft.types import Configuration
from raft.types import Server as RaftServer
from raft.wal import open_durable_storage
from registry.commands import Command, DeregisterRequest

from ..acl import request as acl_context
from ..acl.read_filters import filter_read
from ..agent_tls import create_ca, create_cert
from ..api.routes import build_app
from ..checks import CheckRunner
from ..config import AgentConfig
from ..dns import DNSSettings, serve_dns
from ..dns.agent_lookup import AgentLookup
from ..errors import (
    ConfigError,
    InvalidArgument,
    MeshdError,
    NoServersError,
    StartupError,
)
from ..http.app import App
from ..rpc import RPCClient, RPCError
from ..values.ejections import ProxyEjections
from ..values.events import EventRing, UserEvent, accepts
from ..values.request_samples import SampleStore
from ..version import meshd_version
from ..wire import ReadOptions, ReadResult, WriteResult
from . import gc_pauses, gc_policy, server_stats
from .acl_commands import authorize_command
from .acl_resolver import ACLResolver, TokenScopedReader
from .acl_server import ACLServer
from .alias_source import CatalogAliasSource
from .ca_server import CAServer, settings_from_agent
from .canary import CanaryController
from .consul_service import ConsulServiceReconciler
from .intention_migrate import IntentionMigrator
from .leaf_cache import LeafCache
from .live_metrics import instrument, metrics_for_agent
from .liveness import LivenessTracker, heartbeat_loop
from .local import LocalState
from .members import BATCH_META, SEGMENT_META
from .membership import Membership
from .mesh_stats import MeshStats
from .peer_wait import PeerWait
from .pool import ClientBackend, ServerPool
from .preflight import (
    check_data_dir,
    check_tls_files,
    dns_listener,
    http_listener,
    listening,
    rpc_listener,
)
from .readiness import cluster_initialized
from .reloader import Reloader
from .server import MeshServer, ServerSettings, http_error_from_rpc
from .server_ops import fetch_archive
from .session_ttl import SessionTTLController
from .snapshot_archive import ArchiveError, decode_archive
from .snapshot_upload import push_archive
from .sync import AntiEntropy, NodeInfo
from .tokens import TokenStore
from .traces import AgentTraces
from .user_events import UserEvents

log = logging.getLogger("meshd.agent")
# How often a request waiting for the leader's establishment looks again.
READY_POLL = 0.005
# After a leader is known, how long a server waits to see its establishment
# in the replicated state before it reports ready anyway (config mismatch).
ESTABLISHMENT_GRACE = 10.0


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
        """Raises ``StartupError`` for a data_dir or TLS files it cannot use.

        Builds the parts in named steps (the order matters only where a step
        says so); nothing runs until ``run``."""
        if config.data_dir:
            check_data_dir(config.data_dir)
        data_dir = Path(config.data_dir) if config.data_dir else None
        self._init_identity(config, rng)
        self._init_unstarted()
        self._build_local_state(data_dir)
        self._build_observers()
        self._server_ssl, self._client_ssl = self._tls_contexts()
        self._build_cluster_services()
        self._build_acl(data_dir)
        self._build_leaf_cache()
        self.reloader = Reloader(self)  # after tokens, local and sync exist

    def _init_identity(self, config: AgentConfig, rng: random.Random | None) -> None:
        """Who this agent is: node id and name, datacenter, addresses, version."""
        self.config = config
        self.rng = rng or random.Random()
        self.node_id = _node_id(config)
        self.node_name = config.node_name or socket.gethostname()
        self.datacenter = config.datacenter
        self.started_at = time.time()
        self.version = meshd_version()
        self.heartbeat_interval = 1.0 * config.performance.raft_multiplier
        self.rpc_address = f"{config.advertise_addr}:{config.ports.server}"

    def _init_unstarted(self) -> None:
        """The parts ``run`` starts (by role) and the state of the run itself."""
        self.server: MeshServer | None = None
        self.pool: ServerPool | None = None
        self.backend: Any = None
        self.sync: AntiEntropy | None = None
        self.http_addresses: list[tuple[str, int]] = []
        self.app: App | None = None  # the HTTP API, built in run()
        self.dns_addresses: list[tuple[str, int]] = []
        self.liveness: LivenessTracker | None = None
        self.session_ttl: SessionTTLController | None = None
        self.rpc: RPCClient | None = None
        self.ca: CAServer | None = None
        self.acl_server: ACLServer | None = None
        self.canaries: CanaryController | None = None  # the leader's canary controller
        self._initialized = False
        self._leader_seen_at = 0.0
        self._nursery: trio.Nursery | None = None
        self.shutdown = trio.Event()
        self.left = False
        # Re-reads the configuration sources for ``reload`` (the CLI sets it).
        self.config_loader: Callable[[], AgentConfig] | None = None
        self._sync_scope = trio.CancelScope()  # leave() stops anti-entropy first

    def _build_local_state(self, data_dir: Path | None) -> None:
        """The local services and checks, their check runner, proxy reports."""
        config = self.config
        # -dev keeps everything on loopback, sidecar public listeners included.
        sidecars_at = config.advertise_addr if config.dev else ""
        self.local = LocalState(self.node_name, data_dir, sidecar_address=sidecars_at)
        # Outlier ejections the local proxies report (meshd/api/proxy_ejections.py).
        self.proxy_ejections = ProxyEjections(self._is_local_proxy)
        self.peer_wait = PeerWait(self.node_name, config.bootstrap_expect)
        self.checks = CheckRunner(
            self.local,
            enable_script_checks=config.enable_script_checks,
            enable_local_script_checks=config.enable_local_script_checks,
            rng=self.rng,
            on_deregister=self._deregister_critical,
            alias_source=CatalogAliasSource(self.read),
            on_result=lambda kind, status, secs: self.metrics.check_result(kind, status, secs),
        )

    def _build_observers(self) -> None:
        """Metrics, the local proxies' traces, edge figures and request samples."""
        # Reads the agent only when scraped, so it can exist before anything runs.
        self.metrics = metrics_for_agent(self)
        self.traces = AgentTraces(self.config.tracing)  # spans of the local proxies (traces.py)
        # The local proxies' per-edge figures and the mesh graph (mesh_stats.py).
        self.mesh_stats = MeshStats(
            self,
            lambda: self.config.ports.http,
            lambda: self.config.connect.default_intention_policy == "allow",
            own_token=lambda: self.tokens.get("agent") or self.tokens.get("default"),
        )
        self.request_samples = (
            SampleStore()
        )  # for config write --dry-run (meshd/values/request_samples.py)

    def _build_cluster_services(self) -> None:
        """User events (a server's agent shares the server's ring) and membership."""
        self.events = EventRing()
        self.membership = Membership(self)
        self.user_events = UserEvents(self)

    def _build_acl(self, data_dir: Path | None) -> None:
        """The agent's tokens and the resolver of request tokens."""
        self.tokens = TokenStore(self.config.acl, data_dir)
        self.acl = ACLResolver(
            self.config.acl,
            self.tokens,
            node=self.node_name,
            datacenter=self.config.datacenter,
            call=lambda method, args: self.server_call(method, args),
        )

    def _build_leaf_cache(self) -> None:
        """Connect leaf certificates of the local services, renewed before expiry."""
        self.leaf_cache = LeafCache(
            lambda method, args: self.server_call(method, args),
            self.read,
            self.config.datacenter,
            rng=self.rng,
        )

    # ------------------------------------------------------------ building

    def _tls_contexts(self) -> tuple[Any, Any]:
        cfg = self.config
        tls = cfg.tls.internal_rpc
        if tls.ca_file and tls.cert_file and tls.key_file:
            check_tls_files(cfg)
            files = (tls.ca_file, tls.cert_file, tls.key_file)
            try:
                return server_context(*files), client_context(*files)
            except TLSConfigError as exc:
                raise StartupError("tls.internal_rpc", "files", str(exc), "fix the files") from None
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
        return open_durable_storage(Path(self.config.data_dir) / "raft")

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
            version=self.version,
            acls=cfg.acl.enabled,
            bootstrap_expect=cfg.bootstrap_expect,
            rpc_max_conns=cfg.limits.rpc_max_conns,
            rpc_max_conns_per_client=cfg.limits.rpc_max_conns_per_client,
            rpc_frame_timeout=cfg.limits.rpc_frame_timeout,
        )

    async def _authorize_local_write(self, cmd: Command, token: str) -> None:
        """A server agent's anti-entropy write with a registration's own
        token: the rule ``Registry.Apply`` enforces for client agents
        (raises ``PermissionDenied``). Its own (agent token) writes are the
        server's and pass, as they pass its HTTP edge."""
        if self.server is None or not self.acl.enabled:
            return
        authorize_command(await self.acl.resolve(token), cmd, self.server.store)

    def rpc_token(self) -> str:
        """The token an RPC to a server acts with: the request's being
        handled, else this agent's (anti-entropy, heartbeats), as Consul."""
        return acl_context.secret.get() or self.tokens.get("agent") or self.tokens.get("default")

    def node_info(self) -> NodeInfo:
        cfg = self.config
        return NodeInfo(
            name=self.node_name,
            id=self.node_id,
            address=cfg.advertise_addr,
            datacenter=cfg.datacenter,
            tagged_addresses={"lan": cfg.advertise_addr, "wan": cfg.advertise_addr},
            # Consul agents mark their own node so; /v1/agent/members relies on it.
            # A server also marks that it can apply batch entries (members.py).
            meta={SEGMENT_META: "", **cfg.node_meta, **({BATCH_META: "1"} if cfg.server else {})},
        )

    # -------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        self.reloader.load()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.checks.run)
            if cfg.server:
                await self._start_server(nursery)
            rpc = self._start_server_path(nursery)
            self.sync = AntiEntropy(
                self.local,
                self.backend,
                self.node_info(),
                rng=self.rng,
                cluster_size=self._cluster_size,
                metrics=self.metrics,
                authorize=self._authorize_local_write if self.server is not None else None,
            )
            nursery.start_soon(self.membership.join_loop, rpc)
            nursery.start_soon(self.leaf_cache.run)
            nursery.start_soon(self.traces.run)
            if self.server is not None and cfg.dev:
                await self.server.node.wait_for_leader(5)
                # and for its ACL and CA set-up, so the API is usable at once
                await self.wait_leadership_ready(5)
            nursery.start_soon(self._run_sync)
            instrument(self.metrics, self)
            self.app = build_app(self)
            await self._start_http(nursery, self.app)
            await self._start_dns(nursery)
            # Full GC passes scan only what is new (issue 18): gc_policy.py.
            # Installed once the listeners are up, so a start that fails on a
            # busy port stays one line on stderr (no pause logged behind it).
            nursery.start_soon(gc_policy.install().govern)
            gc_pauses.install()
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

    def _start_server_path(self, nursery: trio.Nursery) -> RPCClient:
        """The RPC client, the pool of servers (a server's own address, or the
        client backend that forwards to servers) and the liveness heartbeat."""
        cfg = self.config
        rpc = RPCClient(
            nursery,
            self._client_ssl,
            server_name=f"server.{cfg.datacenter}.{cfg.domain}",
            local_id=self.node_id,
            source_address=source_address(cfg.bind_addr),
            token=self.rpc_token,
        )
        self.rpc = rpc
        pool = self.pool = ServerPool(rpc, self.rng)
        if self.server is not None:
            pool.add([self.rpc_address])
        else:
            self.backend = ClientBackend(
                pool, lambda: self.tokens.get("agent") or self.tokens.get("default")
            )
        nursery.start_soon(
            functools.partial(heartbeat_loop, interval=self.heartbeat_interval),
            lambda method, args: pool.call(method, args, timeout=self.heartbeat_interval * 2),
            self.node_name,
        )
        return rpc

    async def _start_http(self, nursery: trio.Nursery, app: App) -> None:
        """HTTP on every client address, unless ports.http is -1 (then only
        ``self.app`` answers, in-process: the API tests drive it so)."""
        from ..http import open_http_listeners, serve_http
        from ..http.accept import http_connection_cap

        cfg = self.config
        if cfg.ports.http < 0:
            return
        addrs = [(host, cfg.ports.http) for host in cfg.client_addr]
        listeners = await listening(open_http_listeners(addrs), http_listener(cfg))
        self.http_addresses = [tuple(lst.socket.getsockname()[:2]) for lst in listeners]
        await nursery.start(
            lambda task_status: serve_http(
                listeners,
                app,
                per_client_max_connections=cfg.limits.http_max_conns_per_client,
                # Consul has no total cap; meshd's keeps the fds for the rest.
                max_connections=http_connection_cap(cfg.limits.http_max_conns, log),
                task_status=task_status,
            )
        )

    async def _start_dns(self, nursery: trio.Nursery) -> None:
        """DNS on every client address (UDP and TCP), unless ports.dns is -1."""
        cfg = self.config
        if cfg.ports.dns < 0:
            return
        settings = DNSSettings.from_agent_config(cfg)
        if self.server is not None and not self.acl.enabled:
            # (Under ACLs an answer also depends on the dns token and the
            # policies, which the catalog index does not see: no index cache.)
            store = self.server.fsm.store

            def catalog_index() -> int | None:
                # Catalog tables only: a KV write must not empty the DNS cache.
                index: int = store.index_of("nodes", "services", "checks")
                return index

            lookup = AgentLookup(self._dns_reader(), settings, state_index=catalog_index)
        else:
            # answers reused for at most cache_ttl
            lookup = AgentLookup(self._dns_reader(), settings)
        for host in cfg.client_addr:
            udp, _tcp = await listening(
                nursery.start(
                    functools.partial(
                        serve_dns, recursors=cfg.recursors, rng=self.rng, metrics=self.metrics
                    ),
                    (host, cfg.ports.dns),
                    lookup,
                    settings,
                ),
                dns_listener(cfg, host),
            )
            self.dns_addresses.append(udp)

    async def _start_server(self, nursery: trio.Nursery) -> None:
        cfg = self.config
        bootstrap = None
        if cfg.dev or cfg.bootstrap or cfg.bootstrap_expect == 1:
            bootstrap = Configuration((RaftServer(self.node_id, self.rpc_address),))
        self.server = MeshServer(
            self._server_settings(),
            self._storage(),
            self._server_ssl,
            self._client_ssl,
            bootstrap=bootstrap,
            rng=self.rng,
        )
        # Liveness TTL follows Consul's timing scale: 5 s at raft_multiplier 1.
        self.liveness = LivenessTracker(
            self.server,
            ttl=self.heartbeat_interval * 5,
            on_change=lambda node, status: self.metrics.liveness_change(
                node, "alive" if status == "passing" else "failed"
            ),
        )
        self.session_ttl = SessionTTLController(self.server)
        self.metrics.instrument_raft(self.server.node)
        self.server.leadership_ready = self.leadership_ready
        self.acl.attach_server(self.server, initialized=self.initialized)
        if cfg.connect.enabled:
            self.ca = CAServer(
                self.server,
                settings_from_agent(cfg.connect.ca_config),
                datacenter=cfg.datacenter,
                resolve=self.acl.resolve if cfg.acl.enabled else None,
            )
        if cfg.acl.enabled:
            self.acl_server = ACLServer(
                self.server,
                cfg.acl,
                datacenter=cfg.datacenter,
                data_dir=Path(cfg.data_dir) if cfg.data_dir else None,
                resolve=self.acl.resolve,
            )
        await listening(nursery.start(self.server.run), rpc_listener(cfg))
        nursery.start_soon(self.liveness.run)
        nursery.start_soon(self.session_ttl.run)
        nursery.start_soon(ConsulServiceReconciler(self.server, version=self.version).run)
        nursery.start_soon(IntentionMigrator(self.server).run)
        if self.acl_server is not None:
            nursery.start_soon(self.acl_server.run)
        if self.ca is not None:
            nursery.start_soon(self.ca.run)
        self.canaries = CanaryController(
            self.server,
            self.mesh_stats,  # asks the other agents with this agent's token
            fire=lambda name, data: self.fire_event(UserEvent.new(name, data, "", "", "")),
        )
        nursery.start_soon(self.canaries.run)
        self.backend = self.server
        self.events = self.server.events

    async def _run_sync(self) -> None:
        assert self.sync is not None
        with self._sync_scope:
            await self.sync.run()

    def _cluster_size(self) -> int:
        return 1

    # ------------------------------------------------------ API delegates

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        """Run registry read ``name``; inside an API request under ACLs the
        answer is filtered to what the caller's token may read."""
        result: ReadResult = await self.backend.read(name, args, opts)
        authz = acl_context.current.get()
        if authz is not None and result.value is not None:
            value, dropped = filter_read(name, authz, result.value)
            if dropped:  # an answer for this token only: not shared with others
                result = replace(result, value=value, filtered=True, shared=None)
        return result

    async def read_unfiltered(
        self, name: str, args: Mapping[str, Any], opts: ReadOptions
    ) -> ReadResult:
        result: ReadResult = await self.backend.read(name, args, opts)
        return result

    def _dns_reader(self) -> Any:
        """What DNS reads through: the agent, filtered under ACLs to what the
        agent's ``dns`` token (else its default, else anonymous) may read."""
        if not self.acl.enabled:
            return self
        return TokenScopedReader(self.read, self.acl, lambda: self.tokens.get("dns"))

    async def write(self, cmd: Any) -> WriteResult:
        return await self.backend.write(cmd)  # type: ignore[no-any-return]

    def known_servers(self) -> list[str]:
        if self.pool is None:
            raise NoServersError()
        return self.pool.servers()

    def ttl_update(self, check_id: str, status: str, output: str) -> None:
        """A TTL check's status from the API: recorded and its TTL restarted.
        Raises ``NotFoundError`` (404) for an unknown or non-TTL check."""
        self.checks.ttl_update(check_id, status, output)

    async def _deregister_critical(self, service_id: str) -> None:
        """DeregisterCriticalServiceAfter elapsed for ``service_id``."""
        if service_id in self.local.services:
            log.info("event=deregister_critical_service service_id=%s", service_id)
            self.local.remove_service(service_id)

    def _is_local_proxy(self, service_id: str) -> bool:
        """Whether ``service_id`` is a connect proxy registered on this agent."""
        defn = self.local.services.get(service_id)
        return defn is not None and bool(defn.service.destination)

    async def wait_synced(self, timeout: float = 1.0) -> None:
        """After a local change: give anti-entropy up to ``timeout`` to put it
        in the catalog, so the caller reads its own write (Consul syncs
        asynchronously; a client that registers then lists expects it)."""
        if self.sync is not None:
            await self.sync.wait_synced(self.local.version, timeout)

    async def leave(self, *, delay: float = 0.0) -> None:
        """Graceful leave: stop anti-entropy, deregister this node from the
        catalog (best effort, at most 5 s), hand leadership to another voter
        when leading; then the agent stops, ``delay`` seconds later (so that
        an HTTP answer to ``/v1/agent/leave`` can still go out)."""
        self.left = True
        self._sync_scope.cancel()
        if self.backend is not None:
            with trio.move_on_after(5):
                try:
                    await self.write(DeregisterRequest(node=self.node_name))
                except MeshdError as exc:
                    log.warning("event=leave_deregister_failed reason=%s", exc)
        if self.server is not None and self.server.is_leader():
            voters = self.server.node.core.configuration.voters()
            if len(voters) > 1:
                try:
                    await self.server.node.transfer_leadership()
                except Exception as exc:
                    log.warning("event=leave_transfer_failed reason=%s", exc)
        if delay > 0 and self._nursery is not None:
            self._nursery.start_soon(self._stop_after, delay)
        else:
            self.shutdown.set()

    async def _stop_after(self, delay: float) -> None:
        await trio.sleep(delay)
        self.shutdown.set()

    # ----------------------------------------------------- cluster calls

    async def server_call(
        self, method: str, args: Mapping[str, Any], *, timeout: float = 60.0
    ) -> Any:
        """Run the server RPC ``method``: in-process on a server, through the
        pool on a client. Raises the ``RequestError`` the server raised,
        ``NoServersError`` and ``NoLeaderError``."""
        if self.server is not None:
            return await self.server.call_local(method, args)
        if self.pool is None:
            raise NoServersError()
        try:
            return await self.pool.call(method, args, timeout=timeout)
        except RPCError as exc:
            raise http_error_from_rpc(exc) from None

    def initialized(self) -> bool:
        """Whether the cluster's leader has established leadership (see
        ``readiness``); always True on a client, which cannot tell. Once
        seen it stays so: the test is not repeated on every request."""
        if self._initialized or self.server is None:
            return True
        self._initialized = cluster_initialized(self.server.store, self.config)
        if not self._initialized and self.server.leader_address() is not None:
            # A follower whose initial_management differs from the leader's
            # would wait forever: give up waiting a while after a leader is known.
            now = trio.current_time()
            self._leader_seen_at = self._leader_seen_at or now
            if now - self._leader_seen_at > ESTABLISHMENT_GRACE:
                log.warning("event=leader_establishment_not_seen waited_s=%g", ESTABLISHMENT_GRACE)
                self._initialized = True
        return self._initialized

    def no_leader_detail(self) -> str:
        """What a server without a leader waits for ("" with a leader, or on a client)."""
        if self.server is None or self.server.leader_address() is not None:
            return ""
        voters = len(self.server.node.core.configuration.servers)
        return self.peer_wait.describe(configured=voters > 0, voters=voters)

    def log_peer_wait(self) -> None:
        if self.server is not None and self.server.leader_address() is None:
            voters = len(self.server.node.core.configuration.servers)
            self.peer_wait.log(trio.current_time(), configured=voters > 0, voters=voters)

    def leadership_ready(self) -> bool:
        """A server that knows a leader which has established leadership."""
        if self.server is None:
            return True
        return self.server.leader_address() is not None and self.initialized()

    async def wait_initialized(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for ``initialized``; returns it.
        A request that would fail in the window after an election (``ACL not
        found`` for the configured management token) waits here instead."""
        with trio.move_on_after(timeout):
            while not self.initialized():
                await trio.sleep(READY_POLL)
        return self.initialized()

    async def wait_leadership_ready(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for ``leadership_ready``; returns it."""
        with trio.move_on_after(timeout):
            while not self.leadership_ready():
                await trio.sleep(READY_POLL)
        return self.leadership_ready()

    async def status_leader(self) -> str:
        return await self.membership.status_leader()

    async def status_peers(self) -> list[str]:
        return await self.membership.status_peers()

    def self_member(self) -> dict[str, Any]:
        return self.membership.self_member()

    def consul_stats(self) -> dict[str, str]:
        return server_stats.consul_stats(self.config, self.server, self.pool)

    def raft_stats(self) -> dict[str, str] | None:
        return None if self.server is None else server_stats.raft_stats(self.server)

    def node_meta(self) -> dict[str, str]:
        return dict(self.node_info().meta)

    async def members(self) -> list[dict[str, Any]]:
        return await self.membership.members()

    async def join(self, address: str) -> None:
        await self.membership.join(address)

    # ------------------------------------------------------------ reload

    async def reload(self) -> None:
        """Re-read and apply the configuration (see ``Reloader.reload``)."""
        await self.reloader.reload()

    # ---------------------------------------------------------- snapshot

    async def snapshot_save(self, *, stale: bool = False) -> tuple[bytes, int]:
        """A snapshot archive taken on the leader (any server with ``stale``)
        and the Raft index it was taken at."""
        if self.server is not None:
            return await self.server.ops.archive(stale)
        return await fetch_archive(self.server_call, stale)

    async def snapshot_restore(self, archive: bytes) -> int:
        """Restore the registry from ``archive``; returns the Raft index it
        was restored at. Raises ``InvalidArgument`` for a corrupt archive and
        ``Unimplemented`` where restore is not supported; nothing changes then."""

        async def call(method: str, args: Mapping[str, Any]) -> Any:
            return await self.server_call(method, args, timeout=300)

        if self.server is not None:
            result = await call("Snapshot.Restore", {"archive": archive})
        else:
            try:  # do not ship garbage to the servers
                await trio.to_thread.run_sync(decode_archive, archive)
            except ArchiveError as exc:
                raise InvalidArgument(f"Invalid snapshot archive: {exc}", "archive") from None
            # In chunks when larger than one RPC frame takes (Consul streams it).
            result = await push_archive(call, archive)
        if self.sync is not None:
            self.sync.trigger_full()  # the restored catalog may lack this node's entries
        return int(result["index"])

    # ------------------------------------------------------------ events

    def accepts_event(self, event: UserEvent) -> bool:
        services = [(d.service.service, d.service.tags) for d in self.local.services.values()]
        return accepts(event, self.node_name, services)

    def event_targets(self) -> list[str]:
        if self.server is not None:
            conf = self.server.node.core.configuration
            return [s.address for s in conf.servers if s.id != self.node_id]
        return self.pool.servers() if self.pool is not None else []

    async def fire_event(self, event: UserEvent) -> UserEvent:
        """Keep ``event`` here and hand it to every server (see ``UserEvents``)."""
        return await self.user_events.fire(event)

    async def list_events(
        self, name: str = "", *, index: int = 0, wait: float = 300.0
    ) -> tuple[list[UserEvent], int]:
        """Events this agent accepts, blocking on ``index`` (see ``UserEvents``)."""
        return await self.user_events.listing(name, index=index, wait=wait)
