"""The server's operator, membership, snapshot and user-event RPC methods.

Kept apart from ``server.py`` (reads, writes, forwarding) so each file stays
about one concern. Methods that must run on the leader go through
``MeshServer.on_leader``: a follower forwards them once, the leader answers.

Snapshot archives can be tens of MB while an RPC frame is at most 8 MiB, so
``Snapshot.Save`` answers with the first 4 MiB and an ID, and the caller
fetches the rest with ``Snapshot.Chunk`` (the archive is kept on the answering
server for two minutes). A restore larger than that arrives the same way
in reverse: ``Snapshot.Upload`` chunks, then ``Snapshot.Restore`` of the
upload (``snapshot_upload.py``).

Restore is only done on a single-server cluster: replacing the state of
several servers consistently needs a replicated restore command in
registry/ (see ``RESTORE_UNSUPPORTED``); until then a multi-server cluster
answers 501 and nothing changes.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from raft.errors import RaftError
from raft.transport import PeerInfo
from raft.types import Role, Snapshot, SnapshotMeta
from registry import queries as q
from registry.commands import DeregisterRequest
from registry.errors import CorruptSnapshotError
from registry.state.autopilot import autopilot_config

from ..errors import Internal, InvalidArgument, NoLeaderError, Unimplemented
from ..values.events import UserEvent
from .autopilot import AutopilotSettings, raft_configuration_json
from .members import LEAVING_WATCH, LeavingMarks, cluster_members, is_live
from .snapshot_archive import ArchiveError, ArchiveMeta, decode_archive, encode_archive
from .snapshot_upload import CHUNK, Uploads

if TYPE_CHECKING:
    from .server import MeshServer

log = logging.getLogger("meshd.server")

ARCHIVE_TTL = 120.0
MAX_CACHED_ARCHIVES = 4
RESTORE_UNSUPPORTED = (
    "Snapshot restore is only supported on a single-server cluster for now: "
    "restoring several servers needs a replicated restore command. "
    "Nothing was changed."
)

Call = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


async def fetch_archive(call: Call, stale: bool) -> tuple[bytes, int]:
    """Fetch a snapshot archive through ``call`` (an RPC to a server) in
    chunks; returns the archive and the Raft index it was taken at."""
    first = await call("Snapshot.Save", {"stale": stale})
    data = bytearray(first["data"])
    total = int(first["size"])
    while len(data) < total:
        part = await call("Snapshot.Chunk", {"id": first["id"], "offset": len(data)})
        if not part["data"]:
            raise Internal("snapshot transfer ended early; take it again")
        data += part["data"]
    return bytes(data), int(first["index"])


def _quoted(text: str) -> str:
    return json.dumps(text)


class ServerOps:
    """Operator, members, snapshot and event methods of one ``MeshServer``."""

    def __init__(self, server: MeshServer) -> None:
        self.srv = server
        self._archives: dict[str, tuple[bytes, float]] = {}
        self.leaving = LeavingMarks()
        self.uploads = Uploads(trio.current_time)

    def register(self) -> None:
        r = self.srv.register_rpc
        r("Operator.RaftConfiguration", self._rpc_raft_configuration)
        r("Operator.RaftRemovePeer", self._rpc_remove_peer)
        r("Operator.RaftTransferLeader", self._rpc_transfer_leader)
        r("Operator.AutopilotHealth", self._rpc_autopilot_health)
        r("Operator.ForceLeave", self._rpc_force_leave)
        r("Agent.Members", self._rpc_members)
        r("Snapshot.Save", self._rpc_snapshot_save)
        r("Snapshot.Chunk", self._rpc_snapshot_chunk)
        r("Snapshot.Restore", self._rpc_snapshot_restore)
        r("Snapshot.Upload", self._rpc_snapshot_upload)
        r("Event.Fire", self._rpc_event_fire)
        r("Event.List", self._rpc_event_list, blocking=True)

    async def _leader(
        self, method: str, args: Mapping[str, Any], local: Callable[[], Awaitable[Any]]
    ) -> Any:
        self.srv.check_forwarded(args)
        return await self.srv.on_leader(method, args, local)

    # ------------------------------------------------------------ raft

    def names(self) -> dict[str, str]:
        """Node names of the Raft servers: learnt at join, then the catalog's."""
        ids = self.srv.node.core.configuration.ids()
        _, nodes = q.catalog_nodes(self.srv.store, None)
        out = dict(self.srv.node_names)
        out.update({n.id: n.node for n in nodes if n.id in ids})
        return out

    def raft_configuration(self) -> dict[str, Any]:
        st = self.srv.node.status().core
        return raft_configuration_json(
            st.configuration, st.leader, self.names(), self.srv.node.applied_index
        )

    async def _rpc_raft_configuration(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        async def local() -> Any:
            return self.raft_configuration()

        if args.get("stale"):
            return await local()
        return await self._leader("Operator.RaftConfiguration", args, local)

    async def _rpc_remove_peer(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        server_id, address = str(args.get("id") or ""), str(args.get("address") or "")

        async def local() -> Any:
            conf = self.srv.node.core.configuration
            if server_id:
                target = conf.get(server_id)
                missing = f"id {_quoted(server_id)} was not found in the Raft configuration"
            else:
                target = next((s for s in conf.servers if s.address == address), None)
                missing = f"address {_quoted(address)} was not found in the Raft configuration"
            if target is None:
                raise Internal(missing)
            try:
                await self.srv.node.remove_server(target.id)
            except RaftError as exc:
                raise Internal(f"cannot remove {target.id}: {exc}") from None
            log.info("event=raft_peer_removed id=%s address=%s", target.id, target.address)
            return {"removed": target.id}

        return await self._leader("Operator.RaftRemovePeer", args, local)

    async def _rpc_transfer_leader(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        target = str(args.get("id") or "") or None

        async def local() -> Any:
            try:
                chosen = await self.srv.node.transfer_leadership(target)
            except (RaftError, trio.TooSlowError, TimeoutError) as exc:
                raise Internal(f"cannot transfer leadership: {exc}") from None
            log.info("event=leadership_transferred to=%s", chosen)
            return {"Success": True}

        return await self._leader("Operator.RaftTransferLeader", args, local)

    async def _rpc_autopilot_health(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        async def local() -> Any:
            _, config = autopilot_config(self.srv.store, None)
            self.srv.autopilot.settings = AutopilotSettings.from_config(config)
            return self.srv.autopilot.evaluate(
                self.srv.node.status().core,
                tick=self.srv.settings.tick_interval,
                now=time.time(),
                names=self.names(),
                version=self.srv.settings.version,
            )

        return await self._leader("Operator.AutopilotHealth", args, local)

    # --------------------------------------------------------- members

    def members(self) -> list[dict[str, Any]]:
        store = self.srv.store
        _, nodes = q.catalog_nodes(store, None)
        _, critical = q.health_checks_in_state(store, None, "critical", None)
        _, live = q.liveness_list(store, None)
        st = self.srv.node.status().core
        down: list[str] = []
        if st.role == Role.LEADER:
            limit = 2 * self.srv.settings.election_ticks
            down = [p.id for p in st.peers if p.id != st.id and p.ticks_since_ack > limit]
        now = trio.current_time()
        out = cluster_members(
            nodes,
            critical,
            live,
            st.configuration,
            self.srv.member_info,
            names=self.names(),
            unreachable=down,
            leaving=self.leaving.current(now),
        )
        return out + self.leaving.left_members(now, (m["Name"] for m in out))

    async def _rpc_members(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        async def local() -> Any:
            return self.members()

        return await self._leader("Agent.Members", args, local)

    async def _rpc_force_leave(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        node = str(args.get("node") or "")

        async def local() -> Any:
            return await self._force_leave(node, prune=bool(args.get("prune")))

        return await self._leader("Operator.ForceLeave", args, local)

    def _remember_left(self, node: str) -> None:
        member = next((m for m in self.members() if m["Name"] == node), None)
        if member is not None:  # a member, not a catalog-only node
            self.leaving.left(member, trio.current_time())

    def _live_member(self, node: str) -> bool:
        _, checks = q.health_node_checks(self.srv.store, None, node)
        if not any(c.check_id == "serfHealth" for c in checks):
            return False  # a catalog-only node, not a member
        _, live = q.liveness_list(self.srv.store, None)
        return is_live(node, [c for c in checks if c.status == "critical"], live)

    async def _leave_if_it_fails(self, node: str) -> None:
        """A force-left member that fails instead of refuting has left (Serf's
        leaving -> left): deregister it then, as Consul's leader does."""
        try:
            with trio.move_on_after(LEAVING_WATCH):
                while self.srv.is_leader():
                    if not self._live_member(node):
                        self._remember_left(node)
                        await self.srv.write(DeregisterRequest(node=node))
                        log.info("event=force_leave_left node=%s", node)
                        return
                    await trio.sleep(0.5)
        except Exception as exc:  # a system task must not raise
            log.warning("event=force_leave_watch_failed node=%s reason=%s", node, exc)

    async def _force_leave(self, node: str, *, prune: bool = False) -> dict[str, Any]:
        """Deregister ``node`` from the catalog and, for a server, remove it
        from the Raft configuration; a failed member stays listed as left
        unless ``prune``. A live client member is only marked leaving (see
        ``members.LeavingMarks``). Raises ``RequestError`` (500, Consul's text)
        for an unknown node and 400 for the leader itself."""
        conf = self.srv.node.core.configuration
        _, nodes = q.catalog_nodes(self.srv.store, None)
        target = next((n for n in nodes if n.node == node), None)
        server_id = target.id if target is not None and conf.get(target.id) else None
        if server_id is None:
            named = (i for i, nm in self.names().items() if nm == node and conf.get(i))
            server_id = next(named, None)
        if target is None and server_id is None:
            raise Internal(f"agent: No node found with name '{node}'")
        if server_id is None and self._live_member(node):
            # Consul marks a live member leaving and it refutes; nothing is deregistered.
            self.leaving.mark(node, trio.current_time())
            trio.lowlevel.spawn_system_task(self._leave_if_it_fails, node)
            log.info("event=force_leave node=%s live=true", node)
            return {"node": node, "raft": None}
        if server_id == self.srv.settings.node_id:
            raise InvalidArgument(
                "cannot force-leave the leader; transfer leadership first", "node"
            )
        if server_id is not None:
            try:
                await self.srv.node.remove_server(server_id)
            except RaftError as exc:
                raise Internal(f"cannot remove {server_id} from Raft: {exc}") from None
        if target is not None:
            if not prune:  # ?prune drops it from the member list at once, as Consul
                self._remember_left(node)
            await self.srv.write(DeregisterRequest(node=node))
        log.info("event=force_leave node=%s raft_server=%s", node, server_id)
        return {"node": node, "raft": server_id}

    # -------------------------------------------------------- snapshot

    async def archive(self, stale: bool) -> tuple[bytes, int]:
        """A snapshot archive of the registry, taken on the leader (or here
        with ``stale``); returns it and the Raft index it was taken at."""
        if stale or self.srv.is_leader():
            return await self._take_archive(stale)

        async def call(method: str, args: Mapping[str, Any]) -> Any:
            return await self.srv.on_leader(method, args, lambda: self.srv.call_local(method, args))

        return await fetch_archive(call, stale)

    async def _take_archive(self, stale: bool) -> tuple[bytes, int]:
        node = self.srv.node
        if not stale:
            try:
                await node.read_barrier(allow_lease=True)
            except RaftError as exc:
                raise NoLeaderError(f"No cluster leader ({exc})") from None
        index = node.applied_index
        # Freeze the state at ``index`` now; serialize it in bounded steps.
        view = self.srv.fsm.snapshot_view()
        settings = self.srv.settings
        meta = ArchiveMeta(
            index, self._term_at(index), settings.datacenter, settings.node_name, time.time()
        )
        for _ in view.steps():
            await trio.lowlevel.checkpoint()
        state = view.result()
        archive = await trio.to_thread.run_sync(encode_archive, meta, state)
        log.info("event=snapshot_saved index=%d bytes=%d", index, len(archive))
        return archive, index

    def _term_at(self, index: int) -> int:
        core = self.srv.node.core
        try:
            return core.snapshot_meta_at(index).term
        except RaftError:
            return core.term

    def _keep(self, archive: bytes) -> str:
        now = trio.current_time()
        for key, (_, expires) in list(self._archives.items()):
            if expires < now:
                del self._archives[key]
        while len(self._archives) >= MAX_CACHED_ARCHIVES:
            del self._archives[next(iter(self._archives))]
        key = str(uuid.uuid4())
        self._archives[key] = (archive, now + ARCHIVE_TTL)
        return key

    async def _rpc_snapshot_save(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        self.srv.check_forwarded(args)
        archive, index = await self.archive(bool(args.get("stale")))
        key = self._keep(archive) if len(archive) > CHUNK else ""
        return {"id": key, "size": len(archive), "index": index, "data": archive[:CHUNK]}

    async def _rpc_snapshot_chunk(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        self.srv.check_forwarded(args)
        entry = self._archives.get(str(args.get("id")))
        if entry is None:
            raise Internal("snapshot archive expired or unknown; take the snapshot again")
        archive = entry[0]
        offset = int(args.get("offset", 0))
        if offset + CHUNK >= len(archive):
            self._archives.pop(str(args.get("id")), None)
        return {"data": archive[offset : offset + CHUNK]}

    async def _rpc_snapshot_upload(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        return self.uploads.add_chunk(args)

    async def _rpc_snapshot_restore(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        if args.get("upload") is not None:
            archive: Any = self.uploads.take(str(args["upload"]))
        else:
            archive = args.get("archive")
        if not isinstance(archive, bytes):
            raise InvalidArgument("archive: expected bytes", "archive")
        if len(archive) > CHUNK and len(self.srv.node.core.configuration.servers) != 1:
            # What the leader would answer (400, else 501); an archive this
            # large might not fit in the one frame that forwards it there.
            try:
                await trio.to_thread.run_sync(decode_archive, archive)
            except ArchiveError as exc:
                raise InvalidArgument(f"Invalid snapshot archive: {exc}", "archive") from None
            raise Unimplemented(RESTORE_UNSUPPORTED)

        async def local() -> Any:
            return {"index": await self.restore(archive)}

        forwarded = {"archive": archive, **({"fwd": True} if args.get("fwd") else {})}
        return await self._leader("Snapshot.Restore", forwarded, local)

    async def restore(self, archive: bytes) -> int:
        """Replace the registry state with ``archive``'s (leader of a single-
        server cluster only) and make it durable as a Raft snapshot.

        Raises ``InvalidArgument`` for a corrupt archive and ``RequestError`` 501 on a
        multi-server cluster; in both cases nothing changes.
        """
        try:
            meta, state = await trio.to_thread.run_sync(decode_archive, archive)
        except ArchiveError as exc:
            raise InvalidArgument(f"Invalid snapshot archive: {exc}", "archive") from None
        if len(self.srv.node.core.configuration.servers) != 1:
            raise Unimplemented(RESTORE_UNSUPPORTED)
        try:
            self.srv.fsm.restore(state)  # all or nothing: a bad state leaves the store as it was
        except CorruptSnapshotError as exc:
            raise InvalidArgument(f"Invalid snapshot archive: {exc}", "archive") from None
        index = self.srv.node.applied_index
        await self._persist_restored(state, index)
        log.info("event=snapshot_restored from_index=%d at_index=%d", meta.index, index)
        return index

    async def _persist_restored(self, state: bytes, index: int) -> None:
        # The restored state is what the FSM holds at ``index``: a Raft
        # snapshot there makes a restart load it and replay only later
        # entries, and every entry up to ``index`` goes, so servers that join
        # later are sent this snapshot rather than the pre-restore history
        # (which would rebuild the state the restore replaced).
        node = self.srv.node
        core = node.core
        try:
            meta = core.snapshot_meta_at(index)
        except RaftError:
            meta = SnapshotMeta(index, core.term, core.configuration)
        snap = Snapshot(meta, state)
        await trio.to_thread.run_sync(lambda: node.storage.save_snapshot(snap, compact_upto=index))
        if index > core.log.offset:
            node.compact_through(index)

    # ---------------------------------------------------------- events

    async def _rpc_event_fire(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        try:
            event = UserEvent.from_wire(args.get("event") or {})
        except ValueError as exc:
            raise InvalidArgument(str(exc), "event") from None
        stored = self.srv.events.add(event)
        return {"ltime": stored.ltime}

    async def _rpc_event_list(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        ring = self.srv.events
        index = int(args.get("index") or 0)
        wait = min(max(float(args.get("wait") or 0.0), 0.0), 600.0)
        if index and ring.index() == index:
            await ring.wait_changed(wait)
        return {"events": [e.to_wire() for e in ring.events()], "index": ring.index()}
