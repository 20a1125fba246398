"""The leader's CPU per forwarded write, in process (issue #18).

A ``--dev`` agent (one server, in-memory Raft log, no HTTP listener) answers
``Registry.ApplyBatch`` calls as a leader answers its followers' batches:
``--followers`` callers each send batches of ``--batch`` KV puts back to back
through ``call_local`` (the handler, the Raft proposal, the log, the apply
and the answer; no socket, no replication). Prints the process's CPU
microseconds per forwarded write, the median of ``--rounds``. Run it from
another source tree (``cd`` there; the tree is first on ``sys.path``) for the
before figure, alternating.

    .venv/bin/python -m bench.fwd_leader [--batch 10] [--followers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import trio
import trio.testing

from registry.commands import KVRequest, encode_command
from tests.meshd.inproc import inproc_agent


async def _run(a: argparse.Namespace) -> list[float]:
    figures: list[float] = []
    async with inproc_agent() as (agent, _api):
        server = agent.server
        assert server is not None
        value = b"v" * 100

        batches = [
            [
                [
                    encode_command(KVRequest(op="set", key=f"b/{f}/{b}/{i}", value=value, now=1.0))
                    for i in range(a.batch)
                ]
                for b in range(100)
            ]
            for f in range(a.followers)
        ]

        async def follower(f: int, n: int) -> None:
            for b in range(n):
                cmds = batches[f][b % 100]
                answer = await server.call_local("Registry.ApplyBatch", {"cmds": cmds, "fwd": True})
                if any("w" not in r or not r["w"]["ok"] for r in answer["results"]):
                    raise RuntimeError(answer)

        for _ in range(a.rounds):
            n = max(1, a.writes // (a.batch * a.followers))
            t0 = time.process_time()
            async with trio.open_nursery() as nursery:
                for f in range(a.followers):
                    nursery.start_soon(follower, f, n)
            figures.append((time.process_time() - t0) / (n * a.batch * a.followers) * 1e6)
    return figures


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=10, help="writes per forwarded batch")
    p.add_argument("--followers", type=int, default=2)
    p.add_argument("--writes", type=int, default=4000, help="per round")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    clock = trio.testing.MockClock(autojump_threshold=0)
    figures: Any = trio.run(_run, a, clock=clock)
    print(
        f"batch {a.batch} x {a.followers} followers: {statistics.median(figures):.1f} us CPU"
        f" per forwarded write (median of {a.rounds}: "
        + " ".join(f"{x:.1f}" for x in figures)
        + f") load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
