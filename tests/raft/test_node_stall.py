"""The driver after an event-loop stall (issue 18): a leader whose loop
stalled for 3 election timeouts while its followers answered must not step
down. Runs under trio's MockClock: the stall is a clock jump with no task
running, exactly what a long synchronous burst of work looks like to the
loop."""

from __future__ import annotations

import random
from collections.abc import Callable

import trio
import trio.testing

from raft.node import NodeConfig, RaftNode
from raft.storage import MemoryStorage
from raft.types import Configuration, Message, Role, Server
from tests.raft.kvfsm import KVFSM, put
from tests.raft.local_net import LocalNetwork, LocalTransport

TICK = 0.01
ELECTION = 10


def _socket_like(transport: LocalTransport, nursery: trio.Nursery) -> None:
    """Deliver through a reader task, as the real transport does: what a
    peer sent during a stall waits, readable but unread, until the loop
    runs its readers again."""
    deliver: Callable[[Message], None] | None = transport.on_message
    assert deliver is not None
    send, receive = trio.open_memory_channel[Message](100_000)
    transport.on_message = send.send_nowait

    async def reader() -> None:
        async for msg in receive:
            deliver(msg)

    nursery.start_soon(reader)


async def _start(nursery: trio.Nursery, net: LocalNetwork, nid: str, election: int) -> RaftNode:
    conf = Configuration(tuple(Server(i, f"{i}:8300") for i in ("s1", "s2", "s3")))
    cfg = NodeConfig(id=nid, address=f"{nid}:8300", tick_interval=TICK, election_ticks=election)
    node = RaftNode(
        cfg, MemoryStorage(), KVFSM(), net.transport(nid), rng=random.Random(nid), bootstrap=conf
    )
    await nursery.start(node.run)
    _socket_like(net.transports[nid], nursery)
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
