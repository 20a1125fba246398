"""The trio driver (raft.node) with real sqlite storage on an in-memory network."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from raft.core import COMMIT_NOTICE
from raft.errors import (
    LeadershipLostError,
    NotLeaderError,
    ProposalDroppedError,
    StorageError,
)
from raft.node import NodeConfig, RaftNode
from raft.storage import MemoryStorage
from raft.types import Configuration, Message, MessageType, Role, Server
from raft.wal import SegmentLogStorage
from tests.raft.kvfsm import KVFSM, incr, put
from tests.raft.local_net import LocalNetwork

TICK = 0.01


class Cluster:
    def __init__(self, nursery: trio.Nursery, tmp: Path, ids: list[str], **cfg: int) -> None:
        self.nursery = nursery
        self.tmp = tmp
        self.net = LocalNetwork()
        self.ids = ids
        self.cfg = cfg
        self.nodes: dict[str, RaftNode] = {}
        self.fsms: dict[str, KVFSM] = {}
        self.scopes: dict[str, trio.CancelScope] = {}
        self.conf = Configuration(tuple(Server(i, f"{i}:8300") for i in ids))

    async def start(self, nid: str, *, bootstrap: bool = True) -> RaftNode:
        fsm = KVFSM()
        node = RaftNode(
            NodeConfig(id=nid, address=f"{nid}:8300", tick_interval=TICK, **self.cfg),
            SegmentLogStorage(self.tmp / nid),
            fsm,
            self.net.transport(nid),
            rng=random.Random(nid),
            bootstrap=self.conf if bootstrap else None,
        )
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await node.run(task_status=task_status)

        await self.nursery.start(run)
        self.nodes[nid], self.fsms[nid], self.scopes[nid] = node, fsm, scope
        return node

    def crash(self, nid: str) -> None:
        self.scopes.pop(nid).cancel()
        self.net.transports.pop(nid)
        del self.nodes[nid]

    async def leader(self, timeout: float = 5) -> RaftNode:
        with trio.fail_after(timeout):
            while True:
                leaders = [n for n in self.nodes.values() if n.is_leader()]
                if len(leaders) == 1:
                    return leaders[0]
                await trio.sleep(TICK)


@asynccontextmanager
async def cluster(tmp: Path, n: int = 3, **cfg: int) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(nursery, tmp, [f"s{i}" for i in range(1, n + 1)], **cfg)
        for nid in c.ids:
            await c.start(nid)
        yield c
        nursery.cancel_scope.cancel()


async def test_single_node_applies_and_returns_fsm_result() -> None:
    fsm = KVFSM()
    conf = Configuration((Server("a", "a:1"),))
    node = RaftNode(
        NodeConfig("a", "a:1", tick_interval=TICK), MemoryStorage(), fsm, bootstrap=conf
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_for_leader(2)
        assert await node.apply(incr("n")) == 1
        assert await node.apply(incr("n")) == 2
        assert await node.read_barrier() >= 2
        assert fsm.data == {"n": 2}
        nursery.cancel_scope.cancel()


async def test_a_node_stopped_by_cancellation_closes_its_storage(tmp_path: Path) -> None:
    # How every agent stops (its nursery cancelled): the storage must be
    # closed on the way out, not left open (its segment file descriptor
    # leaked, a second owner of the directory) because the close itself was
    # an await in an already cancelled scope.
    storage = SegmentLogStorage(tmp_path)
    conf = Configuration((Server("a", "a:1"),))
    node = RaftNode(NodeConfig("a", "a:1", tick_interval=TICK), storage, KVFSM(), bootstrap=conf)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_for_leader(2)
        await node.apply(incr("n"))
        nursery.cancel_scope.cancel()
    with pytest.raises(StorageError, match="closed"):
        storage.load()


async def test_apply_batch_proposes_together_in_order_and_answers_each() -> None:
    fsm = KVFSM()
    conf = Configuration((Server("a", "a:1"),))
    storage = MemoryStorage()
    node = RaftNode(NodeConfig("a", "a:1", tick_interval=TICK), storage, fsm, bootstrap=conf)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_for_leader(2)
        saves = 0
        real_save = storage.save

        def counting_save(*args: object) -> None:
            nonlocal saves
            saves += 1
            real_save(*args)  # type: ignore[arg-type]

        storage.save = counting_save  # type: ignore[method-assign]
        assert await node.apply_batch([incr("n") for _ in range(50)]) == list(range(1, 51))
        assert saves <= 2, f"{saves} saves for one batch of 50"
        assert fsm.data == {"n": 50}
        nursery.cancel_scope.cancel()


class _StepCounter(trio.abc.Instrument):
    """How many times each task ran (one step per scheduler round it ran in)."""

    def __init__(self) -> None:
        self.steps: dict[trio.lowlevel.Task, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task] = self.steps.get(task, 0) + 1


async def test_apply_batch_is_answered_in_one_wake_not_one_per_command() -> None:
    """A forwarded batch's answer waits for its commit, not for a scheduler
    round per command on top (each round of a loaded server costs ms)."""
    conf = Configuration((Server("a", "a:1"),))
    node = RaftNode(
        NodeConfig("a", "a:1", tick_interval=TICK), MemoryStorage(), KVFSM(), bootstrap=conf
    )
    counter = _StepCounter()
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_for_leader(2)
        got: list[object] = []

        async def batch() -> None:
            got.extend(await node.apply_batch([incr("n") for _ in range(50)]))

        trio.lowlevel.add_instrument(counter)
        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(batch, name="batch")
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert got == list(range(1, 51))
        steps = [n for task, n in counter.steps.items() if task.name == "batch"]
        assert steps and steps[0] <= 4, f"apply_batch ran {steps} steps for 50 commands"
        nursery.cancel_scope.cancel()


async def test_three_nodes_replicate_and_follower_refuses_with_leader_hint(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        values = [await leader.apply(put(f"k{i}", i)) for i in range(20)]
        assert values == [True] * 20
        follower = next(n for n in c.nodes.values() if n is not leader)
        with pytest.raises(NotLeaderError) as info:
            await follower.apply(put("x", 1))
        with pytest.raises(NotLeaderError):
            await follower.apply_batch([put("x", 1)])
        assert info.value.leader_id == leader.config.id
        assert info.value.leader_addr == f"{leader.config.id}:8300"
        idx = await leader.read_barrier()
        with trio.fail_after(2):
            while any(n.applied_index < idx for n in c.nodes.values()):
                await trio.sleep(TICK)
        for fsm in c.fsms.values():
            assert fsm.data == {f"k{i}": i for i in range(20)}


async def test_concurrent_proposals_are_batched_into_few_fsyncs(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        saves = 0
        real_save = leader.storage.save

        def counting_save(*args: object) -> None:
            nonlocal saves
            saves += 1
            real_save(*args)  # type: ignore[arg-type]

        leader.storage.save = counting_save  # type: ignore[method-assign]
        got: list[int] = []

        async def one() -> None:
            got.append(await leader.apply(incr("n")))

        async with trio.open_nursery() as n:
            for _ in range(200):
                n.start_soon(one)
        assert sorted(got) == list(range(1, 201))
        assert saves < 100, f"{saves} saves for 200 proposals: no group commit"


async def test_entries_proposed_while_the_append_window_is_full_share_one_append(
    tmp_path: Path, mock_clock: MockClock
) -> None:
    """With ``max_inflight`` appends unacknowledged, proposals arriving one
    by one wait and go out together with the next acknowledgement (what the
    meshd server relies on: one AppendEntries, fsync and ack for many)."""
    mock_clock.rate = 1  # real time, except while the window is held (below)
    async with cluster(tmp_path, max_inflight=2) as c:
        leader = await c.leader()
        await leader.apply(incr("n"))
        lid = leader.config.id
        # Both followers have acknowledged everything, so each window starts
        # empty (a follower slow to answer would still be full with the
        # earlier appends, and the proposals commit without it).
        with trio.fail_after(5):
            while any(
                pr.match < leader.core.log.last_index() or pr.inflight
                for pr in leader.core.progress.values()
            ):
                await trio.sleep(TICK)
        held: list[Message] = []
        hold = True
        appends: dict[str, int] = {}
        leader_send = c.net.transports[lid].send

        def count_appends(msg: Message) -> None:
            if msg.type == MessageType.APP and msg.entries:
                appends[msg.dst] = appends.get(msg.dst, 0) + 1
            leader_send(msg)

        c.net.transports[lid].send = count_appends  # type: ignore[method-assign]
        for nid in c.ids:
            if nid == lid:
                continue
            real = c.net.transports[nid].send

            def holding(msg: Message, real: Callable[[Message], None] = real) -> None:
                if hold and msg.type == MessageType.APP_RESP:
                    held.append(msg)
                else:
                    real(msg)

            c.net.transports[nid].send = holding  # type: ignore[method-assign]
        got: list[int] = []

        async def one() -> None:
            got.append(await leader.apply(incr("n")))

        async with trio.open_nursery() as nursery:
            # The clock stands still while the acks are held: a heartbeat
            # answered while the window is full lets one append through, and
            # how many ticks the hold spans depends on how busy the machine is
            # (on a loaded CI it spanned enough to exceed the bound below).
            mock_clock.rate = 0
            for _ in range(40):  # one proposal per scheduler round
                nursery.start_soon(one)
                await trio.lowlevel.checkpoint()
            for _ in range(5):
                await trio.lowlevel.checkpoint()
            hold = False
            for msg in held:
                c.net.transports[msg.src].send(msg)
            mock_clock.rate = 1
        assert sorted(got) == list(range(2, 42))
        followers = [nid for nid in c.ids if nid != lid]
        # 2 in the window, 1-2 after the acks: never one per proposal.
        assert all(0 < appends.get(f, 0) <= 8 for f in followers), appends


async def test_a_proposal_in_the_log_when_leadership_is_lost_fails_as_ambiguous(
    tmp_path: Path,
) -> None:
    """Appended but not committed when the leader steps down (check-quorum,
    cut off): ``LeadershipLostError`` (it may still commit, so callers must
    not blindly retry); a proposal refused after that is ``NotLeaderError``."""
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        await leader.apply(incr("n"))
        c.net.isolate(leader.config.id)
        outcome: list[BaseException] = []

        async def propose() -> None:
            try:
                await leader.apply(incr("n"))
            except ProposalDroppedError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(propose)
            with trio.fail_after(5):
                while leader.is_leader() or not outcome:
                    await trio.sleep(TICK)
        assert type(outcome[0]) is LeadershipLostError, outcome
        with pytest.raises(NotLeaderError):
            await leader.apply(incr("n"))


async def test_leader_crash_elects_new_leader_and_keeps_acknowledged_writes(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        for _ in range(10):
            await leader.apply(incr("n"))
        old = leader.config.id
        c.crash(old)
        new = await c.leader(timeout=5)
        assert new.config.id != old
        assert await new.apply(incr("n")) == 11
        # The crashed server restarts from its sqlite files and catches up.
        back = await c.start(old, bootstrap=False)
        idx = await new.read_barrier()
        with trio.fail_after(3):
            while back.applied_index < idx:
                await trio.sleep(TICK)
        assert c.fsms[old].data == {"n": 11}


async def test_lagging_follower_catches_up_by_snapshot(tmp_path: Path) -> None:
    async with cluster(tmp_path, snapshot_threshold=50, trailing_logs=10) as c:
        leader = await c.leader()
        lagger = next(i for i in c.ids if i != leader.config.id)
        c.crash(lagger)
        for _ in range(200):
            await leader.apply(incr("n"))
        with trio.fail_after(2):
            while leader.status().snapshot_index < 100:
                await trio.sleep(TICK)
        assert leader.core.log.offset > 0, "leader did not compact its log"
        back = await c.start(lagger, bootstrap=False)
        idx = await leader.read_barrier()
        with trio.fail_after(3):
            while back.applied_index < idx:
                await trio.sleep(TICK)
        assert c.fsms[lagger].data == {"n": 200}
        assert back.status().snapshot_index >= 100, "caught up without InstallSnapshot"


async def test_add_voter_remove_server_and_transfer_leadership(tmp_path: Path) -> None:
    # An election timeout of 0.5 s, not 0.1 (the first election takes 0.5 s
    # longer): the whole cluster runs in this process, so a stall of it (a GC
    # pass, a loaded CI) is a stall of every server at once, and one over an
    # election timeout timed the transfer out (it must happen within one).
    async with cluster(tmp_path, election_ticks=50) as c:
        leader = await c.leader()
        await leader.apply(put("a", 1))
        new = await c.start("s4", bootstrap=False)
        await leader.add_voter("s4", "s4:8300")
        assert "s4" in leader.core.configuration.voters()
        with trio.fail_after(2):
            while c.fsms["s4"].data != {"a": 1}:
                await trio.sleep(TICK)
        target = await leader.transfer_leadership("s4")
        assert target == "s4"
        assert await (await c.leader()).apply(put("b", 2)) is True
        assert new.is_leader()
        await new.remove_server(leader.config.id)
        assert leader.config.id not in new.core.configuration.ids()
        assert leader.status().core.role != Role.LEADER


async def test_lease_read_on_idle_leader_returns() -> None:
    """A lease read on a leader with nothing else to do must not wait for
    unrelated work (it used to hang until the next Ready)."""
    conf = Configuration((Server("a", "a:1"),))
    node = RaftNode(
        NodeConfig("a", "a:1", tick_interval=10), MemoryStorage(), KVFSM(), bootstrap=conf
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_for_leader(2)
        await node.apply(put("k", 1))
        with trio.fail_after(1):
            assert await node.read_barrier(allow_lease=True) >= 2
        nursery.cancel_scope.cancel()


async def test_follower_applies_a_leaders_read_index_promptly(tmp_path: Path) -> None:
    """A follower waiting for the leader's read index returns once it has
    applied it, well before a heartbeat would have carried the commit index
    (commits are announced to followers at once)."""
    async with cluster(tmp_path, heartbeat_ticks=50, election_ticks=100) as c:
        leader = await c.leader()
        follower = next(n for n in c.nodes.values() if n is not leader)
        lt = c.net.transports[leader.config.id]

        def no_heartbeats(msg: Message, send: Callable[[Message], None] = lt.send) -> None:
            if msg.type != MessageType.HEARTBEAT:  # no commit index from them
                send(msg)

        lt.send = no_heartbeats  # type: ignore[method-assign]
        await leader.apply(put("a", 1))
        index = leader.applied_index  # no ReadIndex round: its heartbeat would tell them
        # Less than the election timeout (1-2 s) that would otherwise end the
        # wait; a wall-clock bound of a few ticks fails whenever the machine
        # stalls the test's process that long.
        with trio.fail_after(50 * TICK):
            await follower.wait_applied(index)
        assert c.fsms[follower.config.id].data == {"a": 1}


async def test_reads_arriving_during_a_round_share_the_next_one(tmp_path: Path) -> None:
    """While a ReadIndex round is in flight, new reads wait for it and then
    share one round (etcd's batching), each still seeing every write
    committed before it started."""
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        await leader.apply(put("k", 0))
        for nid, node in c.nodes.items():  # the followers answer heartbeats late
            if node is not leader:
                t = c.net.transports[nid]

                def late(msg: Message, send: Callable[[Message], None] = t.send) -> None:
                    if msg.type != MessageType.HEARTBEAT_RESP:
                        return send(msg)

                    async def deliver() -> None:
                        await trio.sleep(3 * TICK)
                        send(msg)

                    c.nursery.start_soon(deliver)
                    return None

                t.send = late  # type: ignore[method-assign]
        contexts: set[bytes] = set()
        lt = c.net.transports[leader.config.id]

        def counting(msg: Message, send: Callable[[Message], None] = lt.send) -> None:
            if msg.type == MessageType.HEARTBEAT and msg.context:
                contexts.add(msg.context)
            send(msg)

        lt.send = counting  # type: ignore[method-assign]
        seen: list[tuple[int, int]] = []

        async def reader(i: int) -> None:
            for _ in range(i):  # one arrival per scheduler round
                await trio.lowlevel.checkpoint()
            if i % 5 == 0:
                await leader.apply(put("k", i))
            committed = leader.core.log.commit
            seen.append((committed, await leader.read_barrier()))

        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                for i in range(30):
                    n.start_soon(reader, i)
        assert len(seen) == 30
        assert all(index >= committed for committed, index in seen)
        # Unbatched, nearly every arrival started its own round (~30).
        assert 1 <= len(contexts) <= 6, contexts


async def test_loop_runs_one_pass_per_write_on_an_idle_leader() -> None:
    """The leader's own inline log write is reported to the core by the loop
    that wrote it, not by an event that wakes the loop for another pass: one
    scheduler step of the driver per write (each pass cost ~50 us of CPU)."""
    conf = Configuration((Server("a", "a:1"),))
    node = RaftNode(
        NodeConfig("a", "a:1", tick_interval=60.0), MemoryStorage(), KVFSM(), bootstrap=conf
    )
    counter = _StepCounter()
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, name="driver")
        await node.wait_for_leader(2)
        await node.apply(incr("n"))  # warm-up
        trio.lowlevel.add_instrument(counter)
        try:
            for _ in range(20):
                await node.apply(incr("n"))
        finally:
            trio.lowlevel.remove_instrument(counter)
        steps = sum(n for task, n in counter.steps.items() if task.name == "driver")
        assert 20 <= steps <= 22, f"the driver ran {steps} steps for 20 writes"
        nursery.cancel_scope.cancel()


async def test_commit_notices_go_out_after_the_proposer_resumed(tmp_path: Path) -> None:
    """The empty appends that tell followers the new commit index are sent
    once the proposer the commit answers has run (on loopback each send
    costs a PUT ~0.1 ms), and still reach the followers."""
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        await leader.apply(put("warm", 0))
        events: list[tuple[str, int]] = []
        transport = c.net.transports[leader.config.id]
        real_send = transport.send

        carried: dict[str, int] = {}  # the highest commit index sent to each follower

        def send(msg: Message) -> None:
            if msg.type == MessageType.APP and msg.context == COMMIT_NOTICE:
                events.append(("notice", msg.commit))
            if msg.type in (MessageType.APP, MessageType.HEARTBEAT):
                carried[msg.dst] = max(carried.get(msg.dst, 0), msg.commit)
            real_send(msg)

        transport.send = send  # type: ignore[method-assign]

        async def proposer(p: int) -> None:
            # Concurrent proposers: commits in consecutive scheduler rounds.
            for i in range(5):
                await leader.apply(put(f"k{i}", p * 10 + i))
                events.append(("resumed", leader.applied_index))

        async with trio.open_nursery() as n:
            for p in range(3):
                n.start_soon(proposer, p)
        # One at a time: nothing overtakes these notices (concurrent
        # proposers' appends may carry every commit index instead).
        await proposer(9)
        for n, (kind, index) in enumerate(events):
            if kind == "resumed":
                early = [e for e in events[:n] if e[0] == "notice" and e[1] >= index]
                assert not early, f"notices {early} sent before the proposer of {index} resumed"
        last = leader.applied_index
        with trio.fail_after(5):
            while any(n.applied_index < last for n in c.nodes.values()):
                await trio.sleep(TICK)
        # Every follower was told the last commit by the leader (a notice,
        # or an append or heartbeat that carried it first: a held-back
        # notice is dropped then, so notices are not one per write).
        assert len(carried) == 2 and min(carried.values()) >= last, (carried, events)
        assert len({str(f.data) for f in c.fsms.values()}) == 1


def test_a_held_back_commit_notice_is_dropped_when_an_append_reaches_its_follower() -> None:
    """A commit notice still held back when the loop sends the follower an
    append is never sent: the append carries a commit index as new. Other
    followers' notices stay held for the notice sender."""
    sent: list[Message] = []

    class Capture:
        def send(self, msg: Message) -> None:
            sent.append(msg)

    node = RaftNode(NodeConfig("a", "a:1"), MemoryStorage(), KVFSM())
    node.transport = Capture()  # type: ignore[assignment]
    notice = Message(
        MessageType.APP, "a", "b", 2, log_term=2, index=5, commit=5, context=COMMIT_NOTICE
    )
    to_c = dataclasses.replace(notice, dst="c")
    node._claimed = [notice]
    node._deferred = [dataclasses.replace(notice, commit=6), to_c]
    append = Message(MessageType.APP, "a", "b", 2, log_term=2, index=5, commit=6)
    node._send([append])
    assert sent == [append]
    assert node._claimed == []
    assert node._deferred == [to_c]
