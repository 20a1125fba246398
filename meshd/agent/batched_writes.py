"""The server's batched writes (issue #18), a mixin of ``MeshServer``.

A follower forwards its writes to the leader gathered into
``Registry.ApplyBatch`` calls (``write_batcher``, write_batch.py); the leader
proposes a call's commands as one ``ForwardedBatch`` Raft entry where
``split_entries`` allows, and gathers its own concurrent KV writes the same
way (``local_batcher``). Each write keeps its own result, error and index.
A ``ForwardedBatch`` entry is proposed only while every voter advertises
that it applies one (``batch_capable``: the rolling-upgrade gate).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from raft.errors import LeadershipLostError, NotLeaderError, ProposalDroppedError
from raft.node import RaftNode
from raft.transport import PeerInfo
from registry.batch_split import split_entries
from registry.commands import (
    Command,
    DecodedBatch,
    ForwardedBatch,
    decode_command,
    encode_command,
)
from registry.errors import CorruptCommandError

from ..errors import InvalidArgument
from ..rpc import RPCClient, RPCError
from .members import batch_capable
from .rpc_errors import _leadership_lost, _to_rpc, error_from_rpc
from .wire import WriteResult
from .write_batch import WriteBatcher

if TYPE_CHECKING:
    from .server import ServerSettings

log = logging.getLogger("meshd.server")
T = TypeVar("T")
# How long the leader trusts what it found about its voters' batch support.
BATCH_CHECK_EVERY = 1.0
# Forwarded-write batches a follower has in flight to the leader. 2 rather
# than 4: batches of 7-8 writes instead of 5-6 under a spread load, and each
# batch costs both ends a TLS round trip and event-loop wakes (bench/fwd_cpu).
FORWARD_PIPELINE = 2
# Batches of the leader's own writes in flight (see MeshServer.local_batcher);
# many, so that a write never waits for a batch ahead of it to commit: the
# batching comes from writes arriving in the same scheduler round. 0: off.
# In process, 48 writers on the leader (bench/fwd_inproc --to-leader
# --memory): CPU per write 84 / 88 / 68 -> 56 / 51 / 46 us.
LOCAL_PIPELINE = 64


class BatchedWrites:
    """``MeshServer``'s forwarded and gathered writes; the attributes it
    uses are declared here so that it type-checks on its own."""

    node: RaftNode
    settings: ServerSettings
    rpc_client: RPCClient | None
    node_names: dict[str, str]
    write_batcher: WriteBatcher
    local_batcher: WriteBatcher
    _batch_writes: bool
    _local_busy: int
    _fb_ok: bool | None
    _fb_until: float

    if TYPE_CHECKING:

        @property
        def store(self) -> Any: ...

        def is_leader(self) -> bool: ...

        def leader_address(self) -> str | None: ...

        async def write_encoded(
            self, data: bytes, *, decoded: Command | None = None
        ) -> WriteResult: ...

    async def _forward_write(self, addr: str, data: bytes) -> WriteResult:
        """``data`` applied by the leader at ``addr``, in a batch with the
        other writes forwarded meanwhile (one ``Registry.Apply`` call of its
        own when the leader predates ``Registry.ApplyBatch``)."""
        assert self.rpc_client is not None
        try:
            if self._batch_writes:
                answer = await self.write_batcher.submit(addr, data)
                if "e" in answer:  # this command's own error
                    raise RPCError(str(answer["e"]), str(answer.get("m", "")), answer.get("d"))
                return WriteResult.from_wire(answer["w"])
            resp = await self.rpc_client.call(addr, "Registry.Apply", {"cmd": data, "fwd": True})
        except RPCError as exc:
            if exc.code == "UnknownMethod" and self._batch_writes:
                self._batch_writes = False  # nothing was applied: send it alone
                return await self._forward_write(addr, data)
            raise error_from_rpc(exc) from None
        return WriteResult.from_wire(resp)

    async def _apply_local(self, data: bytes, decoded: Command) -> tuple[Any, int]:
        """One of this leader's own writes: proposed at once while none is
        in flight (a lone writer waits for nothing), else gathered with the
        others that arrive meanwhile into one entry (``local_batcher``).
        Its result and the applied index its answer names."""
        busy = self._local_busy
        self._local_busy = busy + 1
        try:
            if not busy:
                return await self.node.apply(data, decoded=decoded), self.node.applied_index
            result = await self.local_batcher.submit("", (data, decoded))
        finally:
            self._local_busy -= 1
        if isinstance(result, _Raised):
            raise result.exc
        applied: tuple[Any, int] = result
        return applied

    async def _apply_local_batch(
        self, addr: str, batch: Sequence[tuple[bytes, Command]]
    ) -> Sequence[Any]:
        """This leader's own writes gathered by ``local_batcher``, in order,
        in as few entries as ``split_entries`` allows: one alone as it is,
        several as one ``ForwardedBatch`` entry: each write's ``(result,
        applied index once its entry applied)``, as a write proposed alone
        (a later entry of the batch does not move an earlier one's index).
        What ``node.apply`` raises for an entry comes back, as ``_Raised``,
        for that entry's writes only (the others' outcomes stand)."""
        out: list[Any] = []
        for group in self._entries(batch, lambda item: item[1]):
            try:
                outcomes = await self._propose(group)
            except Exception as exc:
                outcomes = [exc] * len(group)
            index = self.node.applied_index
            out.extend(_Raised(o) if isinstance(o, Exception) else (o, index) for o in outcomes)
        return out

    def _entries(self, items: Sequence[T], command: Callable[[T], Command]) -> list[list[T]]:
        """``items`` cut into the groups that may share one entry (a batch
        entry only when every voter can apply one: else one entry each)."""
        if not self._batch_entries_ok():
            return [[item] for item in items]
        return split_entries(items, command)

    def _voter_ids(self) -> frozenset[str]:
        return self.node.core.configuration.voters()

    def _batch_entries_ok(self) -> bool:
        """Whether a ``ForwardedBatch`` entry may be proposed: every voter of
        the configuration advertises that it applies one (``batch_capable``;
        an older server would stop on it, a rolling upgrade has some).
        Looked at again every ``BATCH_CHECK_EVERY`` seconds."""
        now = trio.current_time()
        if self._fb_ok is not None and now < self._fb_until:
            return self._fb_ok
        voters = self._voter_ids()
        nodes = self.store.catalog.nodes
        found = [nodes.get(self.node_names.get(v, "")) for v in voters]
        known = [n for n in found if n is not None and n.id in voters]
        ok = batch_capable(
            voters,
            self.settings.node_id,
            known if len(known) == len(voters) else nodes.values(),
        )
        if ok != self._fb_ok:
            log.info(
                "event=raft_batch_entries on=%s voters=%d%s",
                ok,
                len(voters),
                "" if ok else " reason=a voter does not advertise fb",
            )
        self._fb_ok, self._fb_until = ok, now + BATCH_CHECK_EVERY
        return ok

    async def _propose(self, group: Sequence[tuple[bytes, Command]]) -> Sequence[Any]:
        """``group`` proposed in one step, in order: one command as itself,
        several as one ``ForwardedBatch`` entry when the cluster can apply
        one, else one entry each (``node.apply_batch``). Each command's
        outcome: its result, or the exception it failed with. Raises what
        ``node.apply`` raises when nothing was proposed."""
        if len(group) == 1:
            data, decoded = group[0]
            return [await self.node.apply(data, decoded=decoded)]
        if not self._batch_entries_ok():
            return await self.node.apply_batch([data for data, _ in group])
        entry = encode_command(ForwardedBatch(cmds=tuple(data for data, _ in group)))
        result = await self.node.apply(entry, decoded=DecodedBatch(tuple(c for _, c in group)))
        results: Sequence[Any] = result.value
        return results

    async def _send_write_batch(self, addr: str, batch: Sequence[bytes]) -> Sequence[Any]:
        assert self.rpc_client is not None
        args = {"cmds": list(batch), "fwd": True}
        resp = await self.rpc_client.call(addr, "Registry.ApplyBatch", args)
        answers: list[Any] = resp["results"]
        return answers

    async def _apply_forwarded(self, cmds: Sequence[Any]) -> list[dict[str, Any]]:
        """The leader's side of a follower's batch: its commands proposed as
        one Raft entry (a ``ForwardedBatch``: one entry to append, replicate,
        store and apply instead of one per command), each answered on its
        own (``{"w": WriteResult}`` or ``{"e": code, "m": message, "d":
        details}``). A command that does not decode fails alone and is not
        stored: the leader does not trust a follower's bytes into the log.
        A batch Raft did not take (leadership moving) is retried command by
        command, as a single forwarded write is."""
        out: list[dict[str, Any]] = [_NOT_BYTES] * len(cmds)
        good: list[tuple[int, bytes, Command]] = []
        for i, data in enumerate(cmds):
            if isinstance(data, bytes):
                try:
                    cmd = decode_command(data)
                except CorruptCommandError as exc:
                    out[i] = _error_answer(InvalidArgument(f"cmd: {exc}", "cmds"))
                    continue
                if type(cmd) is ForwardedBatch:
                    out[i] = _error_answer(InvalidArgument("cmd: a batch in a batch", "cmds"))
                    continue
                good.append((i, data, cmd))
        for group in self._entries(good, lambda item: item[2]):
            await self._apply_forwarded_group(group, out)
        return out

    async def _apply_forwarded_group(
        self, group: Sequence[tuple[int, bytes, Command]], out: list[dict[str, Any]]
    ) -> None:
        """One step of a follower's batch (see ``_apply_forwarded``): each
        command's answer into ``out`` at its position."""
        try:
            outcomes = await self._propose([(data, cmd) for _, data, cmd in group])
        except Exception as exc:
            outcomes = [exc] * len(group)
        applied, slept = self.node.applied_index, False
        for (i, data, _), one in zip(group, outcomes, strict=True):
            if not isinstance(one, Exception):
                out[i] = {"w": WriteResult.wire_of(one, applied)}
            elif isinstance(one, (NotLeaderError, ProposalDroppedError)):
                if not slept:  # certainly not in the log: each is sent again
                    await trio.sleep(0.01)
                    slept = True
                out[i] = await self._answer_forwarded(self.write_encoded(data))
            else:  # leadership lost, storage unavailable
                out[i] = _error_answer(
                    _leadership_lost() if isinstance(one, LeadershipLostError) else one
                )

    @staticmethod
    async def _answer_forwarded(write: Awaitable[WriteResult]) -> dict[str, Any]:
        """One command's answer in a batch: its result, or its own error."""
        try:
            return {"w": (await write).to_wire()}
        except Exception as exc:
            return _error_answer(exc)

    async def _rpc_apply_batch(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        """A follower's forwarded writes (server to server only: the follower
        enforced each command's ACL rule with its caller's token)."""
        cmds = args.get("cmds")
        if not isinstance(cmds, list):
            raise RPCError("InvalidArgument", "cmds: expected a list", {"field": "cmds"})
        if not self.is_leader():
            # Forwarded once already: answer with the leader instead of hopping again.
            raise RPCError("NotLeader", "not the leader", {"leader": self.leader_address()})
        return {"results": await self._apply_forwarded(cmds)}


def _local_size(write: tuple[bytes, Command]) -> int:
    return len(write[0])


def _error_answer(exc: BaseException) -> dict[str, Any]:
    """One command's error in a ``Registry.ApplyBatch`` answer."""
    err = exc if isinstance(exc, RPCError) else _to_rpc(exc)
    if err is None:
        err = RPCError("Internal", str(exc))
    return {"e": err.code, "m": err.message, "d": err.details}


class _Raised:
    """What ``node.apply`` raised for one entry of ``local_batcher``'s batch."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


# A batch's entry that is not a command's bytes (the same answer for each).
_NOT_BYTES = _error_answer(RPCError("InvalidArgument", "cmd: expected bytes", {"field": "cmds"}))
