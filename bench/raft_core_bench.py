"""The Raft core's own CPU per write: no driver, no trio, no disk.

Three ``RaftCore``s in one process commit sequential 200-byte proposals;
each round proposes one entry on the leader, then hands every Ready's
messages to their destinations (through ``raft.codec``'s encode and decode,
as the transport does, in the "codec" column) until nothing is ready: the
sans-I/O part of a replicated write on all three servers (step, Ready,
append, commit), steady on a shared machine. Run it in both trees (A B A B)
to compare; never asserts.

    .venv/bin/python -m bench.raft_core_bench [--writes 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
from collections import deque

from raft import codec
from raft.core import CoreConfig, RaftCore
from raft.types import Configuration, Message, Role, Server


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(writes: int, *, through_codec: bool) -> float:
    """CPU seconds per write, in us."""
    ids = ["s1", "s2", "s3"]
    conf = Configuration(tuple(Server(i, f"{i}:8300") for i in ids))
    cores = {i: RaftCore(CoreConfig(i), random.Random(i), bootstrap=conf) for i in ids}
    queue: deque[Message] = deque()

    def pump() -> None:
        moved = True
        while moved:
            moved = False
            for core in cores.values():
                while core.has_ready():
                    rd = core.ready()
                    for m in rd.messages:
                        if through_codec:
                            m = codec.decode_message(codec.encode_message(m))
                        queue.append(m)
                    core.advance(rd)
                    moved = True
            while queue:
                m = queue.popleft()
                cores[m.dst].step(m)
                moved = True

    for _ in range(100):
        for core in cores.values():
            core.tick(1)
        pump()
        if any(c.role == Role.LEADER for c in cores.values()):
            break
    leader = next(c for c in cores.values() if c.role == Role.LEADER)
    data = b"v" * 200
    for _ in range(200):  # warm-up
        leader.propose(data)
        pump()
    started = _cpu()
    for _ in range(writes):
        leader.propose(data)
        pump()
    return (_cpu() - started) / writes * 1e6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--writes", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=5, help="medians over this many runs")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 200 writes, 1 run")
    args = p.parse_args(argv)
    if args.quick:
        args.writes, args.rounds = 200, 1
    plain = sorted(measure(args.writes, through_codec=False) for _ in range(args.rounds))
    coded = sorted(measure(args.writes, through_codec=True) for _ in range(args.rounds))
    mid = args.rounds // 2
    print(
        f"3 in-process Raft cores, {args.writes} sequential writes x {args.rounds} (medians):"
        f" core {plain[mid]:.1f} us/write, core+codec {coded[mid]:.1f} us/write"
        f" (all three servers; load average {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
