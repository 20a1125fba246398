"""The server role: Raft over mTLS, the registry FSM, and RPC for agents.

Writes are applied through Raft on the leader; a server that is not the
leader forwards them there itself (one hop, gathered into
``Registry.ApplyBatch`` calls: write_batch.py) and, while no leader is known,
holds the request for up to ``rpc_hold_timeout`` before answering "No
cluster leader" (Consul's behaviour during elections). Reads honour Consul's
consistency modes: ``default`` is answered by the leader while its lease
holds, ``consistent`` after a ReadIndex round, ``stale`` by any server.
"""

from __future__ import annotations

import json
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from raft.errors import (
    LeadershipLostError,
    NotLeaderError,
    ProposalDroppedError,
    StorageUnavailableError,
)
from raft.node import NodeConfig, RaftNode
from raft.storage import Storage
from raft.transport import PeerInfo, Transport, source_address
from raft.types import Configuration, Role
from registry.blocking import wait_for_change
from registry.commands import (
    Command,
    CoordinateBatchUpdate,
    ForwardedBatch,
    KVRequest,
    command_type,
    decode_command,
    encode_command,
    stamped,
)
from registry.errors import CorruptCommandError, ValidationError
from registry.fsm import RegistryFSM
from registry.state.watch import Watch, WatchSet

from ..acl import ACLAuthorizer
from ..errors import (
    InvalidArgument,
    NoLeaderError,
    RemoteError,
)
from ..rpc import RPC_KIND, RPCClient, RPCError, RPCServer, RPCUnavailable, caller_token
from ..values.events import EventRing
from .autopilot import HealthTracker
from .batched_writes import FORWARD_PIPELINE, LOCAL_PIPELINE, BatchedWrites, _local_size
from .coordinates import CoordinateBatcher, coordinate_from_args
from .members import MemberInfo
from .read_index import ReadIndexRounds
from .reads import ReadFn, lookup
from .rpc_errors import LEADERSHIP_LOST as LEADERSHIP_LOST
from .rpc_errors import _leadership_lost, _to_rpc
from .rpc_errors import error_from_rpc as error_from_rpc
from .rpc_errors import http_error_from_rpc as http_error_from_rpc
from .rpc_rules import NO_BATCH, RPCRule, rule_for
from .server_ops import ServerOps
from .wire import ReadOptions, ReadResult, WriteResult
from .write_batch import WriteBatcher

log = logging.getLogger("meshd.server")
# Appends the leader has in flight to one follower. Entries proposed while the
# window is full wait and go out together with the next acknowledgement: one
# AppendEntries, one follower fsync and one ack for many of them. With raft's
# default of 256 a busy leader sent an append (and, on each commit, an empty
# commit notice) per proposal batch; writes spread over 3 servers arrive in
# many small batches (followers' forwards, direct PUTs), so AppendEntries per
# entry doubled: kv_bench spread puts 0.50 -> 0.35 appends per entry with 4.
RAFT_MAX_INFLIGHT = 4

RPCHandler = Callable[[Mapping[str, Any], PeerInfo], Awaitable[Any]]


@dataclass(frozen=True)
class ServerSettings:
    node_id: str
    node_name: str
    datacenter: str
    domain: str
    bind: tuple[str, int]
    advertise: str  # host:port other servers and agents dial
    tick_interval: float = 0.1
    election_ticks: int = 10
    snapshot_threshold: int = 16384
    trailing_logs: int = 10240
    rpc_hold_timeout: float = 7.0
    version: str = ""
    acls: bool = False
    bootstrap_expect: int = 0
    # RPC port limits (limits.rpc_max_conns_per_client and friends; 0: none).
    rpc_max_conns: int = 0
    rpc_max_conns_per_client: int = 0
    rpc_frame_timeout: float = 30.0

    @property
    def server_name(self) -> str:
        return f"server.{self.datacenter}.{self.domain}"


class _ForwardReads(Exception):
    """The leader cannot give followers a read index: forward reads instead."""


# Returned by the callables of ``MeshServer._hold_for_leader``: try again.
_AGAIN: Any = object()
# A blocking read's answer (index, value) and the watches it depended on.
_SharedAnswer = tuple[tuple[int, Any], tuple[Watch, ...]]


class MeshServer(BatchedWrites):
    """One meshd server. Start with ``await nursery.start(server.run)``."""

    def __init__(
        self,
        settings: ServerSettings,
        storage: Storage,
        server_ssl: ssl.SSLContext,
        client_ssl: ssl.SSLContext,
        *,
        bootstrap: Configuration | None = None,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.rng = rng or random.Random()
        # The time a write carries (``now`` of its command), read once where
        # the write enters this server (``write``), never in handlers.
        self.wall_clock = wall_clock
        self.fsm = RegistryFSM()
        self.transport = Transport(
            settings.node_id,
            settings.bind,
            server_ssl,
            client_ssl,
            server_name=settings.server_name,
            rng=self.rng,
        )
        self.rpc = RPCServer(
            max_conns=settings.rpc_max_conns,
            max_conns_per_client=settings.rpc_max_conns_per_client,
            frame_timeout=settings.rpc_frame_timeout,
        )
        self.transport.register_handler(RPC_KIND, self.rpc.handle)
        self._client_ssl = client_ssl
        self.node = RaftNode(
            NodeConfig(
                id=settings.node_id,
                address=settings.advertise,
                tick_interval=settings.tick_interval,
                election_ticks=settings.election_ticks,
                snapshot_threshold=settings.snapshot_threshold,
                trailing_logs=settings.trailing_logs,
                max_inflight=RAFT_MAX_INFLIGHT,
            ),
            storage,
            self.fsm,
            self.transport,
            rng=self.rng,
            bootstrap=bootstrap,
        )
        self.rpc_client: RPCClient | None = None
        self.bound: tuple[str, int] | None = None
        # Server node names by Raft ID, learnt from joins (the catalog adds the rest).
        self.node_names: dict[str, str] = {settings.node_id: settings.node_name}
        self.events = EventRing()
        self.autopilot = HealthTracker()
        self.coordinates = CoordinateBatcher(self.write)
        self.member_info = MemberInfo(
            settings.datacenter, settings.version, settings.acls, settings.bootstrap_expect
        )
        self._handlers: dict[str, RPCHandler] = {}
        # Blocking-query answers shared by the waiters a change wakes together.
        self._answers: dict[tuple[str, str, int], _SharedAnswer] = {}
        # Answer keys name this server's state: the API's encoded-body cache
        # is per process, and a process may run several agents (tests).
        self._answer_space = f"{os.urandom(6).hex()}/"
        # With ACLs on: the authorizer of an RPC caller's token (rpc_rules).
        self.token_resolver: Callable[[str], Awaitable[ACLAuthorizer]] | None = None
        # Whether a leader is known and has established leadership (the
        # agent's readiness test, see readiness.py): Status.Leader names no
        # leader before, so client agents wait as the server's own API does.
        self.leadership_ready: Callable[[], bool] = lambda: True
        self.ops = ServerOps(self)
        # Reads on a follower: the leader's read index, shared per round.
        self._read_index = ReadIndexRounds(self._fetch_read_index)
        # Set when the leader predates Raft.ReadIndex (a rolling upgrade):
        # reads are then forwarded whole, as before.
        self._forward_reads = False
        # Writes forwarded to the leader, in batches (write_batch.py); cleared
        # when the leader predates Registry.ApplyBatch (a rolling upgrade).
        # Up to 4 batches in flight, pipelined as etcd's followers forward
        # proposals: with one, a write waited for the batch ahead of it to
        # commit before its own was sent (kv bench, 64 connections over 3
        # members: forwarding overhead 38 -> 17 ms, forwarded writes +44%).
        self.write_batcher = WriteBatcher(self._send_write_batch, max_inflight=FORWARD_PIPELINE)
        self._batch_writes = True
        # The leader's own KV writes (HTTP PUTs sent to it), gathered per
        # scheduler round into one Raft entry like a follower's batch: one
        # append, replication and apply per round instead of one per write.
        self.local_batcher = WriteBatcher(
            self._apply_local_batch, max_inflight=LOCAL_PIPELINE, size=_local_size
        )
        self._local_busy = 0  # own writes in flight, proposed alone or batched
        # Whether every voter can apply a ForwardedBatch (``_batch_entries_ok``).
        self._fb_ok: bool | None = None
        self._fb_until = -1.0
        self._register_rpc()

    @property
    def store(self) -> Any:
        return self.fsm.store

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on the RPC/Raft port, run Raft; ``started()`` once listening
        and the Raft node is running (not necessarily with a leader)."""
        async with trio.open_nursery() as nursery:
            self.rpc_client = RPCClient(
                nursery,
                self._client_ssl,
                server_name=self.settings.server_name,
                local_id=self.settings.node_id,
                source_address=source_address(self.settings.bind[0]),
            )
            self.bound = await nursery.start(self.transport.serve)
            await nursery.start(self.node.run)
            nursery.start_soon(self._read_index.run)
            nursery.start_soon(self.coordinates.run)
            nursery.start_soon(self.write_batcher.run)
            nursery.start_soon(self.local_batcher.run)
            log.info(
                "event=server_started node=%s id=%s rpc=%s",
                self.settings.node_name,
                self.settings.node_id,
                self.settings.advertise,
            )
            task_status.started()

    # ------------------------------------------------------------ leader

    def is_leader(self) -> bool:
        return self.node.is_leader()

    def leader_address(self) -> str | None:
        return self.node.leader()[1]

    async def while_leader(
        self,
        step: Callable[[], Awaitable[None]],
        *,
        event: str,
        expected: tuple[type[Exception], ...],
        lock: trio.Lock,
    ) -> None:
        """Run ``step`` under ``lock`` about once a second while this server
        leads, until cancelled (the leader's housekeeping: the CA, ACL
        bootstrap and reaping). An ``expected`` error is logged as
        ``<event>_failed`` and any other as ``<event>_crashed``; either way the
        step is retried, since a bug in it must not take the agent down."""
        while True:
            if self.is_leader():
                try:
                    async with lock:
                        await step()
                except expected as exc:
                    log.warning("event=%s_failed reason=%s", event, exc)
                except Exception:
                    log.exception("event=%s_crashed", event)
                await trio.sleep(1.0)
            else:
                await self.node.wait_state_change(1.0)

    async def _wait_for_leader(self, deadline: float) -> str:
        """The leader's address, waiting (until ``deadline``, trio time) for an
        election to finish. Raises ``NoLeaderError``."""
        while True:
            addr = self.leader_address()
            if addr is not None:
                return addr
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                raise NoLeaderError()
            await self.node.wait_state_change(min(remaining, 0.25))

    async def _hold_for_leader(
        self,
        local: Callable[[], Awaitable[Any]],
        remote: Callable[[str], Awaitable[Any]],
        *,
        unreachable: Callable[[RPCUnavailable], NoLeaderError] = lambda exc: NoLeaderError(),
    ) -> Any:
        """``local()`` while this server leads, else ``remote(leader address)``,
        holding for up to ``rpc_hold_timeout`` while there is no leader or it
        moves. Either may return ``_AGAIN`` (leadership changed under it) to be
        tried again once the Raft state changes. Raises ``NoLeaderError`` when
        no leader emerged, or ``unreachable(exc)`` when the leader stayed
        unreachable (``RPCUnavailable``) until the hold timeout."""
        deadline = trio.current_time() + self.settings.rpc_hold_timeout
        while True:
            if self.is_leader():
                result = await local()
                if result is not _AGAIN:
                    return result
            addr = await self._wait_for_leader(deadline)
            if addr == self.settings.advertise:
                await self.node.wait_state_change(0.05)
                continue
            try:
                result = await remote(addr)
            except RPCUnavailable as exc:
                if trio.current_time() >= deadline:
                    raise unreachable(exc) from exc
                await self.node.wait_state_change(0.1)
                continue
            if result is not _AGAIN:
                return result
            await self.node.wait_state_change(0.05)

    # ------------------------------------------------------------- writes

    async def write(self, cmd: Command) -> WriteResult:
        """Validate and apply ``cmd`` through Raft (forwarding to the leader).

        Raises ``ValidationError`` for a bad command, ``NoLeaderError`` when
        no leader emerged within the hold timeout and ``RemoteError`` (code
        ``StorageUnavailable``) when this server leads but cannot persist its
        log (a full disk): a ``MeshdError``, which anti-entropy and leave
        handle like any failed write instead of stopping the agent.
        A command whose ``now`` is unset gets this server's ``wall_clock()``.
        """
        cmd = stamped(cmd, self.wall_clock())
        cmd.validate()
        # A KV write (scalars only) is applied on this server, when it leads,
        # as the object itself: no decode. Other commands may hold the
        # caller's mutable objects (anti-entropy's local state), which the
        # store must not keep: they go through the bytes like on followers.
        decoded = cmd if type(cmd) is KVRequest else None
        try:
            return await self.write_encoded(encode_command(cmd), decoded=decoded)
        except StorageUnavailableError as exc:
            raise RemoteError("StorageUnavailable", str(exc)) from None

    async def write_encoded(self, data: bytes, *, decoded: Command | None = None) -> WriteResult:
        """``data`` (an encoded command; ``decoded`` what it encodes, if at
        hand) applied through Raft, as ``write``. A ``ForwardedBatch`` is
        refused (``InvalidArgument``): only the leader builds one, from
        commands it decoded (``_apply_forwarded``, ``_apply_local_batch``)."""
        kind = decoded.TYPE if decoded is not None else command_type(data)
        if kind == ForwardedBatch.TYPE:
            raise InvalidArgument(NO_BATCH, "cmd")

        async def local() -> Any:
            try:
                if decoded is None or not LOCAL_PIPELINE:
                    result = await self.node.apply(data, decoded=decoded)
                    index = self.node.applied_index
                else:
                    result, index = await self._apply_local(data, decoded)
                return WriteResult.from_result(result, index)
            except NotLeaderError:
                return _AGAIN
            except LeadershipLostError:
                raise _leadership_lost() from None
            except ProposalDroppedError:
                # Certainly not in the log (a transfer, or leadership lost
                # before it was appended): sending it again is safe.
                await trio.sleep(0.01)
                return _AGAIN

        result: WriteResult = await self._hold_for_leader(
            local, lambda addr: self._forward_write(addr, data)
        )
        return result

    # -------------------------------------------------------------- reads

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        """Run the read ``name`` with Consul's consistency and blocking rules.

        Raises ``UnknownRead``, ``NoLeaderError``, or ``FilterError`` for a bad
        ``filter`` argument.
        """
        fn = lookup(name)
        if opts.consistency != "stale":
            if self._forward_reads and not self.is_leader():
                return await self._forward_read(name, args, opts)
            try:
                await self.barrier(strict=opts.consistency == "consistent")
            except _ForwardReads:
                return await self._forward_read(name, args, opts)
        shared: tuple[str, str, int] | None = None
        if opts.index > 0:
            query, key = self._shared_query(name, fn, args, opts.index)
            idx, value = await wait_for_change(query, opts.index, opts.wait, rng=self.rng)
            shared = key()
        else:
            idx, value = fn(self.store, None, args)
        return ReadResult(value, idx, *self._leader_meta(opts.consistency), shared=shared)

    async def barrier(self, *, strict: bool) -> None:
        """Until this server's state holds every write committed before the
        call: the leader's ReadIndex round (or lease, unless ``strict``) on
        the leader; on a follower the leader's read index, then applying up
        to it. Raises ``NoLeaderError``."""
        if self.is_leader():
            try:
                await self._leader_read_index(strict)
                return
            except NotLeaderError:
                pass  # lost leadership just now: ask the new leader
        index = await self._read_index.index(strict=strict)
        try:
            await self.node.wait_applied(index)
        except ProposalDroppedError as exc:
            raise NoLeaderError(f"No cluster leader ({exc})") from exc

    async def _fetch_read_index(self, strict: bool) -> int:
        """One read-index round: locally when leading, else ``Raft.ReadIndex``
        on the leader. Waits up to the hold timeout for a leader."""
        deadline = trio.current_time() + self.settings.rpc_hold_timeout

        async def local() -> Any:
            try:
                return await self._leader_read_index(strict)
            except NotLeaderError:
                return _AGAIN

        async def remote(addr: str) -> Any:
            assert self.rpc_client is not None
            try:
                resp = await self.rpc_client.call(addr, "Raft.ReadIndex", {"strict": strict})
                return int(resp["index"])
            except RPCUnavailable:
                raise
            except RPCError as exc:
                if exc.code == "UnknownMethod":
                    log.warning("event=leader_lacks_read_index leader=%s reads=forwarded", addr)
                    self._forward_reads = True
                    raise _ForwardReads() from None
                if exc.code != "NotLeader" or trio.current_time() >= deadline:
                    raise error_from_rpc(exc) from None
                return _AGAIN

        def unreachable(exc: RPCUnavailable) -> NoLeaderError:
            return NoLeaderError(f"No cluster leader (leader unreachable: {exc})")

        index: int = await self._hold_for_leader(local, remote, unreachable=unreachable)
        return index

    def _shared_query(
        self, name: str, fn: ReadFn, args: Mapping[str, Any], index: int
    ) -> tuple[Callable[[WatchSet], tuple[int, Any]], Callable[[], tuple[str, str, int]]]:
        """The blocking query of one waiter, sharing answers with the others,
        and a function giving the key of the answer it returned last.

        A change wakes every waiter on it at once, and they all ask the same
        question of the same state: the first computes the answer and the
        rest reuse it (keyed by read, arguments and the applied Raft index,
        which fixes the state), together with the watches that read depended
        on. So thousands of clients re-arming at once after a change cost one
        read, not one each: the same state gives the same watches, and one
        that fired since calls back at once when registered.
        """
        key_args = json.dumps(args, sort_keys=True, default=str)
        cache = self._answers
        spaced = self._answer_space + name
        last = [(spaced, key_args, 0)]

        def query(ws: WatchSet) -> tuple[int, Any]:
            key = last[0] = (spaced, key_args, self.node.applied_index)
            hit = cache.get(key)
            if hit is not None:
                answer, watches = hit
                if answer[0] <= index:  # does not end the wait: watch what it read
                    for watch in watches:
                        ws.add(watch)
                return answer
            answer = fn(self.store, ws, args)
            if len(cache) >= 256:
                cache.clear()
            cache[key] = (answer, ws.watches())
            return answer

        return query, lambda: last[0]

    def _leader_meta(self, consistency: str) -> tuple[bool, float, str]:
        contact = self.node.last_contact()
        known = self.leader_address() is not None
        effective = {"default": "leader", "consistent": "consistent"}.get(consistency, "stale")
        return known, 0.0 if contact is None else contact, effective

    async def _forward_read(
        self, name: str, args: Mapping[str, Any], opts: ReadOptions
    ) -> ReadResult:
        assert self.rpc_client is not None
        deadline = trio.current_time() + self.settings.rpc_hold_timeout
        addr = await self._wait_for_leader(deadline)
        timeout = opts.wait + 30 if opts.index else 30
        try:
            resp = await self.rpc_client.call(
                addr,
                "Registry.Read",
                {"name": name, "args": dict(args), "opts": opts.to_wire(), "fwd": True},
                timeout=timeout,
            )
        except RPCUnavailable as exc:
            raise NoLeaderError(f"No cluster leader (leader unreachable: {exc.message})") from exc
        except RPCError as exc:
            raise error_from_rpc(exc) from None
        return ReadResult.from_wire(resp)

    # ---------------------------------------------------------------- rpc

    def _register_rpc(self) -> None:
        r = self.register_rpc
        r("Status.Ping", self._rpc_ping)
        r("Status.Leader", self._rpc_leader)
        r("Status.Peers", self._rpc_peers)
        r("Registry.Apply", self._rpc_apply)
        r("Registry.ApplyBatch", self._rpc_apply_batch)
        r("Registry.Read", self._rpc_read, blocking=True)
        r("Raft.ReadIndex", self._rpc_read_index)
        r("Operator.JoinServer", self._rpc_join_server)
        r("Coordinate.Update", self._rpc_coordinate_update)
        self.ops.register()
        self.rpc.add_error_mapper(_to_rpc)

    async def _rpc_coordinate_update(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        """Queue one coordinate update for the next batched write."""
        try:
            update = coordinate_from_args(args)
            CoordinateBatchUpdate(updates=(update,)).validate()
        except ValidationError as exc:
            raise InvalidArgument(str(exc), exc.field) from None
        except (AttributeError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"invalid coordinate: {exc}", "Coord") from None
        self.coordinates.queue(update)
        return True

    def register_rpc(self, name: str, handler: RPCHandler, *, blocking: bool = False) -> None:
        """Serve ``name`` over RPC behind its rule in ``rpc_rules.RULES`` and
        make it callable in-process (``call_local``, which the caller has
        authorized). Raises ``UnruledRPC`` when the table has no rule for it."""
        rule = rule_for(name)
        self.rpc.register(name, self._guarded(rule, handler), blocking=blocking)
        self._handlers[name] = handler

    def is_server_peer(self, peer: PeerInfo) -> bool:
        """Whether ``peer`` showed a server certificate of this datacenter."""
        return self.settings.server_name in peer.dns_names

    def _guarded(self, rule: RPCRule, handler: RPCHandler) -> RPCHandler:
        """``handler`` behind ``rule`` (see meshd/agent/rpc_rules.py)."""

        async def guarded(args: Mapping[str, Any], peer: PeerInfo) -> Any:
            server = self.is_server_peer(peer)
            if (args.get("fwd") or rule.server_only) and not server:
                raise RPCError(
                    "PermissionDenied",
                    "Permission denied: only servers may make this call",
                    {"status": 403},
                )
            resolve = self.token_resolver
            trusted = args.get("fwd") or (server and rule.servers_pass)
            if rule.public or rule.server_only or trusted or resolve is None:
                return await handler(args, peer)
            token = str(args.get(rule.token_arg) or "") if rule.token_arg else ""
            token = token or caller_token.get()
            authz = await resolve(token)
            if rule.check is not None:
                rule.check(authz, args, token, self.store)
            result = await handler(args, peer)
            if rule.answer is not None:
                result = rule.answer(authz, args, token, result)
            return result

        return guarded

    async def call_local(self, name: str, args: Mapping[str, Any]) -> Any:
        """Run the RPC method ``name`` in this process, as a remote caller would;
        errors come out as the local exceptions a remote caller would see."""
        peer = PeerInfo(self.settings.advertise, (), self.settings.node_id, {})
        try:
            return await self._handlers[name](args, peer)
        except RPCError as exc:
            raise http_error_from_rpc(exc) from None

    async def on_leader(
        self, method: str, args: Mapping[str, Any], local: Callable[[], Awaitable[Any]]
    ) -> Any:
        """``local()`` when this server leads, else the RPC ``method`` on the
        leader (once; the leader answers it locally). Waits up to the hold
        timeout for a leader; raises ``NoLeaderError`` after that."""

        async def remote(addr: str) -> Any:
            assert self.rpc_client is not None
            try:
                return await self.rpc_client.call(addr, method, {**args, "fwd": True}, timeout=60)
            except RPCUnavailable:
                raise
            except RPCError as exc:
                raise http_error_from_rpc(exc) from None

        return await self._hold_for_leader(local, remote)

    def check_forwarded(self, args: Mapping[str, Any]) -> None:
        """A request forwarded once must not hop again: refuse it off the leader."""
        if args.get("fwd") and not self.is_leader():
            raise RPCError("NotLeader", "not the leader", {"leader": self.leader_address()})

    async def _rpc_ping(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        st = self.node.status()
        return {
            "node_id": self.settings.node_id,
            "node": self.settings.node_name,
            "datacenter": self.settings.datacenter,
            "server": True,
            "address": self.settings.advertise,
            "leader": self.leader_address(),
            "bootstrapped": bool(st.core.configuration.servers) or st.core.last_index > 0,
            "time": time.time(),
        }

    async def _rpc_leader(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        # "" until the leader has established leadership, as /v1/status/leader.
        return (self.leader_address() or "") if self.leadership_ready() else ""

    async def _rpc_peers(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        conf = self.node.core.configuration
        return [s.address for s in conf.servers]

    async def _rpc_apply(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        data = args.get("cmd")
        if not isinstance(data, bytes):
            raise RPCError("InvalidArgument", "cmd: expected bytes")
        if args.get("fwd") and not self.is_leader():
            # Forwarded once already: answer with the leader instead of hopping again.
            raise RPCError("NotLeader", "not the leader", {"leader": self.leader_address()})
        try:  # never propose bytes that every server would fail to apply
            kind = type(decode_command(data))
        except CorruptCommandError as exc:
            raise RPCError("InvalidArgument", f"cmd: {exc}", {"field": "cmd"}) from None
        if kind is ForwardedBatch:
            raise RPCError("InvalidArgument", NO_BATCH, {"field": "cmd"})
        result = await self.write_encoded(data)
        return result.to_wire()

    async def _rpc_read(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        try:
            opts = ReadOptions.from_wire(args.get("opts") or {})
        except (ValueError, TypeError) as exc:
            raise RPCError("InvalidArgument", f"opts: {exc}") from None
        if args.get("fwd") and opts.consistency != "stale" and not self.is_leader():
            raise RPCError("NotLeader", "not the leader", {"leader": self.leader_address()})
        name, read_args = str(args.get("name")), args.get("args") or {}
        if not isinstance(read_args, Mapping):
            raise RPCError("InvalidArgument", "args: expected a map", {"field": "args"})
        try:
            result = await self.read(name, read_args, opts)
        except (KeyError, TypeError) as exc:  # a caller's missing or mistyped argument
            raise RPCError("InvalidArgument", f"args: bad arguments for {name}: {exc!r}") from None
        return result.to_wire()

    async def _rpc_read_index(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        return {"index": await self._leader_read_index(bool(args.get("strict")))}

    async def _leader_read_index(self, strict: bool) -> int:
        """The read index as leader: a ReadIndex round, or the lease unless
        ``strict``. Raises ``NotLeaderError`` off the leader (an RPC caller
        gets NotLeader with the leader's address) and ``NoLeaderError``
        during a leadership transfer."""
        try:
            return await self.node.read_barrier(allow_lease=not strict)
        except ProposalDroppedError as exc:
            raise NoLeaderError(f"No cluster leader ({exc})") from exc

    async def _rpc_join_server(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        if not self.is_leader():
            raise RPCError("NotLeader", "not the leader", {"leader": self.leader_address()})
        server_id, address = str(args["id"]), str(args["address"])
        await self.node.add_voter(server_id, address)
        log.info("event=server_joined id=%s address=%s", server_id, address)
        return {"ok": True}

    def role(self) -> Role:
        return self.node.core.role
