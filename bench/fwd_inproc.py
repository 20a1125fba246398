"""CPU per write of a 3-server cluster in one process, writes spread (issue #18).

Three server agents (and the harness's client agent) run in this trio
process over real mTLS on loopback with their sqlite logs; ``--writers``
tasks, spread over the three servers as kv_bench's spread row spreads its
connections, each call ``MeshServer.write`` with KV puts back to back: the
leader applies a third of them directly, the followers forward the rest
(``WriteBatcher`` -> ``Registry.ApplyBatch``). Prints the process's CPU
(every server, every thread) per write, the median of ``--rounds``: one
number for the whole write path except HTTP, less sensitive to a loaded
machine than req/s. Run it from another source tree (``cd`` there) for the
before figure, alternating.

    .venv/bin/python -m bench.fwd_inproc [--writers 48] [--writes 3000] [--memory]

``--memory``: in-memory Raft logs (no sqlite, no fsync), so a slow shared
disk does not move writes between the loop and worker threads mid-run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import trio

from meshd.agent.agent import Agent
from raft.storage import MemoryStorage
from registry.commands import KVRequest
from tests.meshd.test_api_status_operator import cluster, leader_of


async def _run(a: argparse.Namespace) -> list[float]:
    figures: list[float] = []
    walls: list[float] = []
    with tempfile.TemporaryDirectory(prefix="meshd-fwdinproc-") as tmp:
        async with cluster(Path(tmp)) as nodes:
            leader = await leader_of(nodes)
            servers = [n.agent.server for n in nodes[:3]]
            if a.to_leader:
                servers = [leader.agent.server] * 3
            value = b"v" * 100

            async def writer(w: int, n: int) -> None:
                server = servers[w % 3]
                assert server is not None
                for i in range(n):
                    cmd = KVRequest(op="set", key=f"bench/{(w * n + i) % 1000:04d}", value=value)
                    if not (await server.write(cmd)).ok:
                        raise RuntimeError("write failed")

            for r in range(a.rounds + 1):  # the first round warms up
                n = max(1, a.writes // a.writers)
                t0, w0 = time.process_time(), time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for w in range(a.writers):
                        nursery.start_soon(writer, w, n)
                if r:
                    figures.append((time.process_time() - t0) / (n * a.writers) * 1e6)
                    walls.append((time.perf_counter() - w0) / n * 1e6)
            assert leader.agent.server is not None and leader.agent.server.is_leader()
    print(f"wall time per write of one writer: median {statistics.median(walls):.0f} us")
    return figures


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--writers", type=int, default=48)
    p.add_argument("--writes", type=int, default=3000, help="per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--memory", action="store_true", help="in-memory Raft logs")
    p.add_argument("--to-leader", action="store_true", help="every write to the leader")
    a = p.parse_args()
    if a.memory:
        Agent._storage = lambda self: MemoryStorage()  # type: ignore[method-assign]
    figures = trio.run(_run, a)
    where = "the leader" if a.to_leader else "3 servers"
    where += " (memory)" if a.memory else ""
    print(
        f"{a.writers} writers over {where}: {statistics.median(figures):.1f} us CPU per write"
        f" (median of {a.rounds}: "
        + " ".join(f"{x:.1f}" for x in figures)
        + f") load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
