"""The Raft driver's own cost per write, without disk, TLS or HTTP.

Three ``RaftNode``s in one process (in-memory storage, the in-memory network
of the driver tests) commit sequential 100-byte puts from one proposer, as
one HTTP connection does. Prints the process CPU (utime + stime) per write,
the scheduler steps of each server's driver task per write and the messages
per write: the part of a KV PUT's CPU that raft/node.py and raft/core.py
decide, steady on a shared machine where wall-clock figures swing 2x.
Run it in both trees (A B A B) to compare; never asserts.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import time

import trio

from raft.node import NodeConfig, RaftNode
from raft.storage import MemoryStorage
from raft.types import Configuration, Message, Server
from tests.raft.kvfsm import KVFSM, put
from tests.raft.local_net import LocalNetwork


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.startswith("driver-"):
            self.steps[task.name] = self.steps.get(task.name, 0) + 1


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(writes: int, tick: float = 0.1) -> dict[str, float]:
    net = LocalNetwork()
    ids = ["s1", "s2", "s3"]
    conf = Configuration(tuple(Server(i, f"{i}:8300") for i in ids))
    sent = 0
    async with trio.open_nursery() as nursery:
        nodes = []
        for sid in ids:
            transport = net.transport(sid)
            real = transport.send

            def counting(msg: Message, real=real) -> None:  # type: ignore[no-untyped-def]
                nonlocal sent
                sent += 1
                real(msg)

            transport.send = counting  # type: ignore[method-assign]
            node = RaftNode(
                NodeConfig(sid, f"{sid}:8300", tick_interval=tick),
                MemoryStorage(),
                KVFSM(),
                transport,
                rng=random.Random(sid),
                bootstrap=conf,
            )
            await nursery.start(node.run, name=f"driver-{sid}")
            nodes.append(node)
        with trio.fail_after(10):
            while not any(n.is_leader() for n in nodes):
                await trio.sleep(0.01)
        leader = next(n for n in nodes if n.is_leader())
        for i in range(200):  # warm-up
            await leader.apply(put(f"k{i % 100}", "v" * 100))
        steps = _Steps()
        sent = 0
        cpu, wall = _cpu(), time.perf_counter()
        trio.lowlevel.add_instrument(steps)
        for i in range(writes):
            await leader.apply(put(f"k{i % 100}", "v" * 100))
        trio.lowlevel.remove_instrument(steps)
        cpu, wall = _cpu() - cpu, time.perf_counter() - wall
        nursery.cancel_scope.cancel()
    lead = f"driver-{leader.config.id}"
    followers = [n for name, n in steps.steps.items() if name != lead]
    return {
        "cpu_us": cpu / writes * 1e6,
        "wall_us": wall / writes * 1e6,
        "leader_steps": steps.steps.get(lead, 0) / writes,
        "follower_steps": sum(followers) / max(1, len(followers)) / writes,
        "messages": sent / writes,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--writes", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3, help="medians over this many runs")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 300 writes, 1 run")
    args = p.parse_args(argv)
    tick = 0.1
    if args.quick:  # a shorter tick elects sooner (heartbeats add ~0.1 message/write)
        args.writes, args.rounds, tick = 300, 1, 0.02
    runs = [trio.run(measure, args.writes, tick) for _ in range(args.rounds)]
    med = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
    print(
        f"3 in-process servers, {args.writes} sequential puts x {args.rounds} (medians):"
        f" CPU {med['cpu_us']:.0f} us/write (all three servers),"
        f" wall {med['wall_us']:.0f} us; driver steps per write: leader"
        f" {med['leader_steps']:.2f}, follower {med['follower_steps']:.2f};"
        f" messages {med['messages']:.2f}/write (load average {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
