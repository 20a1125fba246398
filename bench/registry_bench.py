"""Registry benchmark: load, memory, health query latency, wake-up, snapshot/restore.

Run ``python -m bench.registry_bench`` (``--quick`` for a CI-sized run). It
drives the FSM through the same path Raft does (encoded commands applied at
increasing indexes), prints figures next to their targets, and never
asserts.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from meshd.agent import gc_policy
from registry import queries, shapes
from registry.blocking import wait_for_change
from registry.commands import RegisterRequest, encode_command
from registry.fsm import RegistryFSM
from registry.records import HealthCheck, ServiceInstance

SERVICES_PER_NODE = 17
NAME_SPREAD = 10  # service j on node i is "svc{j}-{i % 10}": nodes/10 instances per name
WAKE_SERVICE = "wake-target"

TARGET_RSS_MB = 600.0
TARGET_HEALTH_P50_MS = 5.0
TARGET_SNAPSHOT_RESTORE_S = 10.0
TARGET_WAKE_P99_MS = 100.0
TARGET_SNAPSHOT_STALL_MS = 50.0
STALL_RUNS = 3


@dataclass
class Sizes:
    nodes: int
    queries: int
    readers: int


FULL = Sizes(nodes=10_000, queries=200, readers=10_000)
QUICK = Sizes(nodes=200, queries=20, readers=200)


def _node_commands(i: int) -> list[bytes]:
    node = f"node-{i:05d}"
    out = []
    for j in range(SERVICES_PER_NODE):
        name = f"svc{j}-{i % NAME_SPREAD}"
        sid = f"{name}-{i}"
        status = "warning" if (i // NAME_SPREAD + j) % 20 == 7 else "passing"
        cmd = RegisterRequest(
            node=node,
            address=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            node_meta={"rack": f"r{i % 40}"},
            service=ServiceInstance(
                service=name, id=sid, port=8000 + j, tags=("v1", f"shard-{j % 4}")
            ),
            checks=(
                HealthCheck(
                    check_id=f"service:{sid}",
                    name=f"{name} health",
                    status=status,
                    service_id=sid,
                    type="http",
                    interval="10s",
                    output="HTTP GET http://localhost/health: 200 OK",
                ),
            ),
            now=1_700_000_000.0,
        )
        out.append(encode_command(cmd))
    return out


def load(fsm: RegistryFSM, nodes: int) -> tuple[int, float, float]:
    """Apply every registration; returns (last index, apply seconds, encode seconds)."""
    index = 0
    apply_time = encode_time = 0.0
    for i in range(nodes):
        t0 = time.perf_counter()
        batch = _node_commands(i)
        t1 = time.perf_counter()
        for data in batch:
            index += 1
            result = fsm.apply(index, data)
            if not result:
                raise RuntimeError(f"registration failed: {result}")
        apply_time += time.perf_counter() - t1
        encode_time += t1 - t0
    return index, apply_time, encode_time


def _percentile(samples: Sequence[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def health_latency(fsm: RegistryFSM, n: int, shape: bool) -> tuple[int, float, float]:
    """Query "svc0-0" passing-only ``n`` times; returns (rows, p50 ms, p99 ms)."""
    samples = []
    rows = 0
    for _ in range(n):
        t0 = time.perf_counter()
        _, found = queries.health_service_nodes(fsm.store, None, "svc0-0", passing=True)
        if shape:
            [shapes.check_service_node_json(r) for r in found]
        samples.append((time.perf_counter() - t0) * 1000)
        rows = len(found)
    return rows, _percentile(samples, 50), _percentile(samples, 99)


async def _wake(fsm: RegistryFSM, readers: int, index: int) -> list[float]:
    store = fsm.store

    def query(ws: object) -> tuple[int, object]:
        return queries.health_service_nodes(store, ws, WAKE_SERVICE)  # type: ignore[arg-type]

    min_index, _ = query(None)
    woke: list[float] = []
    rng = random.Random(0)

    async def reader() -> None:
        await wait_for_change(query, min_index, 300, rng=rng)
        woke.append(time.perf_counter())

    async with trio.open_nursery() as nursery:
        for _ in range(readers):
            nursery.start_soon(reader)
        while len(store.watches.get("service:" + WAKE_SERVICE)) < readers:
            await trio.sleep(0.01)
        t0 = time.perf_counter()
        write = RegisterRequest(
            node="node-00000", address="10.0.0.0", service=ServiceInstance(WAKE_SERVICE, port=2)
        )
        fsm.apply(index + 2, encode_command(write))
    return [(t - t0) * 1000 for t in woke]


def wake_latency(fsm: RegistryFSM, readers: int, index: int) -> tuple[float, float]:
    """Block ``readers`` trio tasks on one service, write it, time their wake-ups (ms)."""
    first = RegisterRequest(
        node="node-00000", address="10.0.0.0", service=ServiceInstance(WAKE_SERVICE, port=1)
    )
    fsm.apply(index + 1, encode_command(first))
    delays = trio.run(_wake, fsm, readers, index)
    return _percentile(delays, 50), _percentile(delays, 99)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _row(name: str, value: str, target: str = "") -> None:
    print(f"  {name:<40} {value:>14}   {target}")


def _report_load(fsm: RegistryFSM, sizes: Sizes) -> int:
    rss0 = _rss_mb()
    index, apply_s, encode_s = load(fsm, sizes.nodes)
    n = sizes.nodes * SERVICES_PER_NODE
    print(f"registry bench: {sizes.nodes} nodes x {SERVICES_PER_NODE} services = {n} instances")
    _row("load (FSM apply, encoded commands)", f"{apply_s:.2f} s", f"({n / apply_s:,.0f} cmd/s)")
    _row("proposer-side encoding (not in load)", f"{encode_s:.2f} s")
    rss = f"{_rss_mb():.0f} MB"
    _row("peak RSS after load", rss, f"target <= {TARGET_RSS_MB:.0f} MB (start {rss0:.0f} MB)")
    t0 = time.perf_counter()
    gc.collect()
    pause = (time.perf_counter() - t0) * 1000
    _row(
        "one full cyclic-GC pass over the store",
        f"{pause:.0f} ms",
        f"({len(gc.get_objects()):,} objects tracked)",
    )
    return index


def _report_queries(fsm: RegistryFSM, sizes: Sizes) -> None:
    rows, p50, p99 = health_latency(fsm, sizes.queries, shape=False)
    total = sizes.nodes // NAME_SPREAD
    target = f"target p50 <= {TARGET_HEALTH_P50_MS} ms (p99 {p99:.2f} ms)"
    _row(f"health query, {rows} passing of {total}", f"p50 {p50:.2f} ms", target)
    rows, p50, p99 = health_latency(fsm, sizes.queries, shape=True)
    _row("  same + Consul JSON shaping", f"p50 {p50:.2f} ms", f"(p99 {p99:.2f} ms)")


def _report_wake(fsm: RegistryFSM, sizes: Sizes, index: int) -> None:
    w50, w99 = wake_latency(fsm, sizes.readers, index)
    target = f"target p99 <= {TARGET_WAKE_P99_MS:.0f} ms (p50 {w50:.1f} ms)"
    _row(f"wake {sizes.readers} blocked readers", f"p99 {w99:.1f} ms", target)


def _report_snapshot(fsm: RegistryFSM) -> None:
    t0 = time.perf_counter()
    snap = fsm.snapshot()
    snap_s = time.perf_counter() - t0
    fresh = RegistryFSM()
    t0 = time.perf_counter()
    fresh.restore(snap)
    restore_s = time.perf_counter() - t0
    total = f"snapshot + restore {snap_s + restore_s:.2f} s"
    _row("snapshot size", f"{len(snap) / 1e6:.1f} MB")
    _row("snapshot time", f"{snap_s:.2f} s")
    _row(
        "restore time",
        f"{restore_s:.2f} s",
        f"{total}, target <= {TARGET_SNAPSHOT_RESTORE_S:.0f} s",
    )
    _row("restored == original", str(fresh.snapshot() == snap))
    _row("peak RSS at end", f"{_rss_mb():.0f} MB", "(two full stores alive)")


async def _longest_loop_gap(snapshot: Callable[[], Awaitable[bytes]]) -> tuple[float, int]:
    """Run ``snapshot`` on the trio thread while a task wakes every 1 ms:
    the longest gap between two of its wake-ups (s), and how many it got
    (a stand-in for the Raft heartbeats the loop must keep sending)."""
    gaps: list[float] = []
    done = trio.Event()

    async def beat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await trio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat)
        await trio.sleep(0.05)
        gaps.clear()
        await snapshot()
        done.set()
    return max(gaps, default=0.0), len(gaps)


def _report_snapshot_stall(fsm: RegistryFSM) -> None:
    """Longest event-loop stall while snapshotting: the old path (serialize
    at once on the loop) against the driver's (freeze, then serialize one
    bounded step per scheduler round); pass = longest gap <= the target,
    over STALL_RUNS runs."""

    async def on_loop() -> bytes:
        return fsm.snapshot()

    async def frozen_view() -> bytes:  # what raft.node does
        view = fsm.snapshot_view()
        for _ in view.steps():
            await trio.lowlevel.checkpoint()
        return view.result()

    n = len(fsm.store.catalog.services)
    for label, path in (("on the loop (before)", on_loop), ("frozen view, in steps", frozen_view)):
        # A server runs under the agent's GC policy (the store, long-lived,
        # is frozen; a pass scans only what is new): measure the driver's
        # path under it too, else the first collection after the snapshot
        # (the collector is paused during it) is a full pass over the whole
        # store CPython would schedule, which no server runs.
        policy = gc_policy.install() if path is frozen_view else None
        try:
            runs = [trio.run(_longest_loop_gap, path) for _ in range(STALL_RUNS)]
        finally:
            if policy is not None:
                gc_policy.uninstall()
        worst = max(gap for gap, _ in runs) * 1000
        passed = sum(1 for gap, _ in runs if gap * 1000 <= TARGET_SNAPSHOT_STALL_MS)
        _row(
            f"loop stall in snapshot, {label}",
            f"max {worst:.0f} ms",
            f"target <= {TARGET_SNAPSHOT_STALL_MS:.0f} ms at {n:,} instances:"
            f" {passed}/{STALL_RUNS} runs pass ({min(b for _, b in runs)}+ beats/run)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures; returns the exit status (always 0)."""
    parser = argparse.ArgumentParser(prog="python -m bench.registry_bench")
    parser.add_argument("--quick", action="store_true", help="small sizes for CI smoke runs")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    fsm = RegistryFSM()
    index = _report_load(fsm, sizes)
    _report_queries(fsm, sizes)
    _report_wake(fsm, sizes, index)
    _report_snapshot(fsm)
    _report_snapshot_stall(fsm)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
