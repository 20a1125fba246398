"""The driver after an event-loop stall (issue 18): a leader whose loop
stalled for 3 election timeouts while its followers answered must not step
down, and a follower whose own loop stalled that long while its leader kept
sending must not stand for election. Runs under trio's MockClock: the whole
process stalling is a clock jump with no task running, exactly what a long
synchronous burst of work looks like to the loop; one server stalling alone
is its loop and its socket reader held while the others run."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from raft.node import NodeConfig, RaftNode
from raft.storage import MemoryStorage
from raft.types import Configuration, Message, Role, Server, SoftState
from tests.raft.kvfsm import KVFSM, put
from tests.raft.local_net import LocalNetwork, LocalTransport

TICK = 0.01
ELECTION = 10


class _Gate:
    """Open, or shut while one server's process is stalled."""

    def __init__(self) -> None:
        self.opened = trio.Event()
        self.opened.set()

    def shut(self) -> None:
        self.opened = trio.Event()

    async def passed(self) -> None:
        while not self.opened.is_set():
            await self.opened.wait()


class _GatedWake:
    """The driver's wake-up event, held while the server is stalled: its loop
    takes no turn (no messages read, no ticks applied, nothing sent) while
    its ticker keeps counting the ticks that pass, as after a real stall."""

    def __init__(self, event: trio.Event, gate: _Gate) -> None:
        self._event = event
        self._gate = gate

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()
        await self._gate.passed()


class _StallableNode(RaftNode):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.gate = _Gate()
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def _wake(self) -> _GatedWake:
        return self._gated_wake

    @_wake.setter
    def _wake(self, event: trio.Event) -> None:
        self._gated_wake = _GatedWake(event, self.gate)


def _socket_like(transport: LocalTransport, nursery: trio.Nursery, gate: _Gate) -> None:
    """Deliver through a reader task, as the real transport does: what a
    peer sent during a stall waits, readable but unread, until the loop
    runs its readers again."""
    deliver: Callable[[Message], None] | None = transport.on_message
    assert deliver is not None
    send, receive = trio.open_memory_channel[Message](100_000)
    transport.on_message = send.send_nowait

    async def reader() -> None:
        async for msg in receive:
            await gate.passed()
            deliver(msg)

    nursery.start_soon(reader)


async def _start(
    nursery: trio.Nursery, net: LocalNetwork, nid: str, election: int
) -> _StallableNode:
    conf = Configuration(tuple(Server(i, f"{i}:8300") for i in ("s1", "s2", "s3")))
    cfg = NodeConfig(id=nid, address=f"{nid}:8300", tick_interval=TICK, election_ticks=election)
    node = _StallableNode(
        cfg, MemoryStorage(), KVFSM(), net.transport(nid), rng=random.Random(nid), bootstrap=conf
    )
    await nursery.start(node.run)
    _socket_like(net.transports[nid], nursery, node.gate)
    return node


async def test_leader_holds_through_a_stall_of_three_election_timeouts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = LocalNetwork()
    changes: list[tuple[str, Role]] = []
    async with trio.open_nursery() as nursery:
        # The followers' own timers are long: this test is about the leader's
        # check-quorum (the followers stall too, being in the same process).
        s1 = await _start(nursery, net, "s1", ELECTION)
        others = [await _start(nursery, net, nid, 50 * ELECTION) for nid in ("s2", "s3")]
        with trio.fail_after(30):
            while not s1.is_leader():
                await trio.sleep(TICK)
        await s1.apply(put("k", 1))
        term = s1.status().core.term

        async def watch() -> None:
            while True:
                await s1.wait_state_change(1.0)
                changes.append(("s1", s1.status().core.role))

        nursery.start_soon(watch)
        for stall in range(5):
            # Let the followers answer the last heartbeats, then stall the
            # whole loop for 3 election timeouts with their answers unread.
            await trio.sleep(TICK * (3 + stall))
            autojump_clock.jump(3 * ELECTION * TICK)
            await trio.sleep(3 * ELECTION * TICK)
            assert s1.is_leader(), f"leader stepped down after stall {stall}"
        assert s1.status().core.term == term
        assert all(n.status().core.leader == "s1" for n in others)
        assert not [c for c in changes if c[1] != Role.LEADER]
        # Still a working leader: a write commits.
        await s1.apply(put("k", 2))
        nursery.cancel_scope.cancel()


async def test_follower_stalled_alone_for_three_election_timeouts_stays_a_follower(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only a follower's process stalls (its loop busy answering HTTP) while
    the leader and the other follower run on. The leader's heartbeats wait
    unread meanwhile; once the follower's loop runs again they count before
    the stall's ticks, so it neither campaigns nor pre-votes: no server
    changes role, term or leader."""
    net = LocalNetwork()
    roles: list[tuple[str, Role]] = []
    async with trio.open_nursery() as nursery:
        nodes = {nid: await _start(nursery, net, nid, ELECTION) for nid in ("s1", "s2", "s3")}
        with trio.fail_after(30):
            while not any(n.is_leader() for n in nodes.values()):
                await trio.sleep(TICK)
        leader = next(nid for nid, n in nodes.items() if n.is_leader())
        await nodes[leader].apply(put("k", 1))
        await trio.sleep(3 * TICK)
        term = nodes[leader].status().core.term

        def observer(nid: str) -> Callable[[SoftState], None]:
            return lambda soft: roles.append((nid, soft.role))

        for nid, n in nodes.items():
            n.observers.append(observer(nid))
        followers = [nid for nid in nodes if nid != leader]
        for stall in range(6):
            stalled = nodes[followers[stall % 2]]
            stalled.gate.shut()
            await trio.sleep(3 * ELECTION * TICK)
            stalled.gate.opened.set()
            await trio.sleep(ELECTION * TICK)
        assert roles == []
        assert all(n.status().core.term == term for n in nodes.values())
        assert all(n.status().core.leader == leader for n in nodes.values())
        await nodes[leader].apply(put("k", 2))
        nursery.cancel_scope.cancel()
