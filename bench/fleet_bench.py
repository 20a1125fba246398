"""A fleet of client agents against one real 3-server cluster.

One load process simulates ``--agents`` client agents (2,000 by default).
Each is the agent's own client-side machinery, not a stand-in: its own
``RPCClient`` (one mTLS connection from its own loopback address, as a host
would have), a ``ServerPool``, heartbeats as the agent's ``heartbeat_loop``
sends them (all agents' from one timer heap: bench/loadgen/heartbeat_wheel.py), the agent's
``AntiEntropy`` over a ``LocalState`` holding 5 services with a TTL check
each (which also keeps its own node's blocking watch, as an agent does), and
2 blocking queries on the health of upstream services, as a sidecar does.
The servers are real ``meshd agent`` processes on a loopback subnet.

Printed: time until every agent is joined and synced, heartbeat and write
latency percentiles, the leader's CPU while steady, each server's RSS, the
load process's own scheduler lag (so a saturated generator is visible),
and nodes flapping (serfHealth turned critical: must be 0). Then the
leader is killed: how long until a new leader, and until every agent has
heartbeated and completed a full sync again, and whether the catalog still
holds every node and service (nothing lost).

``run_fleet`` is also the small fleet of ``make test``
(tests/bench/test_fleet.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench.loadgen.fleet_client import FleetRPCClient
from bench.loadgen.heartbeat_wheel import Beater, HeartbeatWheel
from bench.loadgen.meshd_cluster import running_meshd
from bench.loadgen.procs import cpu_ticks
from meshd.agent.definitions import parse_service
from meshd.agent.local import LocalState
from meshd.agent.pool import ClientBackend, ServerPool
from meshd.agent.sync import AntiEntropy, NodeInfo
from meshd.agent.wire import ReadOptions, ReadResult, WriteResult
from raft.tls import TLSMaterial, client_context_from_pem
from registry.commands import Command
from tools.local_cluster import LocalAgentCluster

SERVICES_PER_AGENT = 5
HEARTBEAT_INTERVAL = 1.0  # the agent's default (raft_multiplier 1)


@dataclass
class Stats:
    heartbeat_ms: list[float] = field(default_factory=list)
    write_ms: list[float] = field(default_factory=list)
    heartbeat_failures: int = 0
    watch_answers: int = 0
    lag_ms: list[float] = field(default_factory=list)  # the load process's own


class TimedBackend:
    """``ClientBackend`` with each write's latency recorded."""

    def __init__(self, inner: ClientBackend, stats: Stats) -> None:
        self.inner = inner
        self.stats = stats

    async def write(self, cmd: Command) -> WriteResult:
        start = time.perf_counter()
        result = await self.inner.write(cmd)
        self.stats.write_ms.append((time.perf_counter() - start) * 1000)
        return result

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        return await self.inner.read(name, args, opts)


# TLS handshakes the load process runs at once (see bench.loadgen.fleet_client).
DIALS_AT_ONCE = 16


@dataclass
class Shared:
    """What the simulated agents share in the load process (not on a fleet)."""

    gate: trio.CapacityLimiter  # dials at once
    wheel: HeartbeatWheel  # every agent's heartbeats
    fleet_size: int  # nodes, for anti-entropy's interval scaling


class SimAgent:
    """One client agent's RPC side: heartbeats, anti-entropy, two watches."""

    def __init__(self, i: int, source: str, servers: list[str], names: int, stats: Stats) -> None:
        self.i = i
        self.node = f"sim-{i:05d}"
        self.node_id = str(uuid.UUID(int=random.Random(i).getrandbits(128)))
        self.source = source
        self.servers = servers
        self.names = names
        self.stats = stats
        self.rng = random.Random(i)
        self.last_heartbeat_ok = 0.0
        self.sync: AntiEntropy | None = None
        self.local = LocalState(self.node, None)
        for k in range(SERVICES_PER_AGENT):
            name = self.service_name(i * SERVICES_PER_AGENT + k)
            self.local.add_service(
                parse_service(
                    {
                        "ID": f"{name}-{self.node}",
                        "Name": name,
                        "Port": 8000 + k,
                        "Tags": ["fleet"],
                        "Check": {"TTL": "1h", "Status": "passing"},
                    },
                    node=self.node,
                ),
                persist=False,
            )

    def service_name(self, n: int) -> str:
        return f"svc-{n % self.names}"

    async def run(self, nursery: trio.Nursery, ctx: Any, shared: Shared) -> None:
        """Join (``Status.Ping`` to a server, as the agent's join does), then
        heartbeat, sync and watch until ``nursery`` is cancelled."""
        rpc = FleetRPCClient(
            nursery,
            ctx,
            gate=shared.gate,
            server_name="server.dc1.consul",
            local_id=self.node_id,
            source_address=self.source,
        )
        pool = ServerPool(rpc, self.rng)
        pool.add(self.servers)
        while True:
            try:
                await pool.call("Status.Ping", {}, timeout=60)
                break
            except Exception:
                await trio.sleep(1.0 + self.rng.random())
        backend = TimedBackend(ClientBackend(pool), self.stats)
        self.sync = AntiEntropy(
            self.local,
            backend,
            NodeInfo(self.node, self.node_id, self.source, "dc1", {"lan": self.source}, {}),
            rng=self.rng,
            # Consul's scaling of the 60 s interval by cluster size (5 min
            # at 2,000 nodes); the bench ends before the first periodic pass.
            cluster_size=lambda: shared.fleet_size,
        )
        shared.wheel.add(Beater(self.node, pool, rpc, self._heartbeat_outcome))
        nursery.start_soon(self.sync.run)
        for k in (1, 2):
            upstream = self.service_name(self.i * SERVICES_PER_AGENT + k * 7)
            nursery.start_soon(self._watch, backend, upstream)

    def _heartbeat_outcome(self, seconds: float | None) -> None:
        if seconds is None:
            self.stats.heartbeat_failures += 1
            return
        self.stats.heartbeat_ms.append(seconds * 1000)
        self.last_heartbeat_ok = time.time()

    async def _watch(self, backend: TimedBackend, service: str) -> None:
        index = 0
        while True:
            opts = ReadOptions(index=index, wait=60.0)
            try:
                res = await backend.read("health.service", {"name": service, "passing": True}, opts)
            except Exception:
                await trio.sleep(1.0 + self.rng.random())
                continue
            self.stats.watch_answers += 1
            index = res.index if res.index >= index else 0

    def recovered_since(self, t: float) -> bool:
        """Heartbeated since ``t`` and no failed sync pass pending."""
        s = self.sync
        return (
            s is not None and self.last_heartbeat_ok >= t and s.synced_version == self.local.version
        )

    def synced_since(self, t: float) -> bool:
        s = self.sync
        return (
            s is not None
            and s.last_full_sync is not None
            and s.last_full_sync >= t
            and self.last_heartbeat_ok >= t
            and s.synced_version == self.local.version
        )


@dataclass
class FleetResult:
    agents: int
    join_s: float = 0.0
    heartbeat_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)
    write_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)
    heartbeat_failures: int = 0
    leader_cpu_pct: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)
    lag_ms_p99: float = 0.0
    load_cpu_pct: float = 0.0  # the load process's own CPU while steady
    flapping: int = 0
    new_leader_s: float = 0.0
    resync_s: float = 0.0
    nodes_after: int = 0
    instances_after: int = 0
    critical_after: int = 0
    error: str = ""  # the phase that did not finish, if one did not


def _pcts(xs: list[float]) -> tuple[float, float, float]:
    if not xs:
        return (0.0, 0.0, 0.0)
    s = sorted(xs)
    return (s[len(s) // 2], s[min(len(s) - 1, int(len(s) * 0.99))], s[-1])


def _proc_cpu_s(pid: int) -> float:
    return cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _get(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def _catalog_counts(cluster: LocalAgentCluster, name: str, names: int) -> tuple[int, int, int]:
    """(sim nodes, sim service instances, sim checks critical) on ``name``."""
    base = cluster.agents[name].http
    nodes = [n for n in _get(base + "/v1/catalog/nodes") if n["Node"].startswith("sim-")]
    instances = 0
    for k in range(names):
        instances += len(_get(f"{base}/v1/catalog/service/svc-{k}"))
    critical = [c for c in _get(base + "/v1/health/state/critical") if c["Node"].startswith("sim-")]
    return len(nodes), instances, len(critical)


def _flaps(cluster: LocalAgentCluster) -> int:
    """serfHealth turning critical for a simulated node, in any server's log."""
    return sum(
        1
        for name in cluster.agents
        for line in cluster.logs(name).splitlines()
        if "event=liveness_change" in line and "node=sim-" in line and "status=critical" in line
    )


def _source(subnet_octet: int, i: int) -> str:
    return f"127.{subnet_octet}.{i // 250}.{i % 250 + 1}"


async def _lag_probe(stats: Stats) -> None:
    while True:
        start = time.perf_counter()
        await trio.sleep(0.05)
        stats.lag_ms.append((time.perf_counter() - start - 0.05) * 1000)


async def _until(cond: Any, timeout: float, what: str, status: Any = None) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise TimeoutError(
                f"{what} within {timeout:.0f}s" + (f": {status()}" if status else "")
            )
        await trio.sleep(0.1)
    return time.monotonic() - start


def _progress(sims: list[SimAgent], since: float, stats: Stats) -> str:
    synced = sum(s.recovered_since(since) for s in sims)
    beating = sum(s.last_heartbeat_ok >= time.time() - 5 for s in sims)
    lag = _pcts(stats.lag_ms[-200:])[1]
    return (
        f"{synced}/{len(sims)} heartbeating and in sync, {beating} heartbeating in the last 5 s, "
        f"{len(stats.write_ms)} writes done, load process lag p99 {lag:.0f} ms"
    )


async def _drive(
    cluster: LocalAgentCluster, agents: int, names: int, steady_s: float, source_octet: int
) -> FleetResult:
    res = FleetResult(agents)
    cert_file, key_file = cluster.issue_cert("fleet", kind="client", ips=["127.0.0.1"])
    material = TLSMaterial(cluster.ca_file.read_text(), cert_file.read_text(), key_file.read_text())
    ctx = client_context_from_pem(material)
    servers = [a.rpc for a in cluster.agents.values() if a.server]
    stats = Stats()
    sims = [SimAgent(i, _source(source_octet, i), servers, names, stats) for i in range(agents)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_lag_probe, stats)
        try:
            await _phases(cluster, sims, stats, res, nursery, ctx, steady_s)
        except TimeoutError as exc:
            res.error = str(exc)
        survivor = await trio.to_thread.run_sync(cluster.leader)
        res.nodes_after, res.instances_after, res.critical_after = await trio.to_thread.run_sync(
            lambda: _catalog_counts(cluster, survivor, names)
        )
        res.heartbeat_failures = stats.heartbeat_failures
        nursery.cancel_scope.cancel()
    res.flapping = _flaps(cluster)
    return res


async def _phases(
    cluster: LocalAgentCluster,
    sims: list[SimAgent],
    stats: Stats,
    res: FleetResult,
    nursery: trio.Nursery,
    ctx: Any,
    steady_s: float,
) -> None:
    """Join, steady state, leader kill; fills ``res`` as it goes."""
    t0 = time.time()
    shared = Shared(
        trio.CapacityLimiter(DIALS_AT_ONCE), HeartbeatWheel(HEARTBEAT_INTERVAL), len(sims) + 3
    )
    nursery.start_soon(shared.wheel.run, nursery)
    for sim in sims:
        nursery.start_soon(sim.run, nursery, ctx, shared)
    res.join_s = await _until(
        lambda: all(s.synced_since(t0) for s in sims),
        600,
        "every agent joined and synced",
        lambda: _progress(sims, t0, stats),
    )
    res.write_ms = _pcts(stats.write_ms)
    # Steady state: heartbeats and watches only.
    leader = await trio.to_thread.run_sync(cluster.leader)
    pid = cluster.agents[leader].proc.pid  # type: ignore[union-attr]
    stats.heartbeat_ms.clear()
    stats.lag_ms.clear()
    cpu0, own0, wall0 = _proc_cpu_s(pid), _proc_cpu_s(os.getpid()), time.monotonic()
    await trio.sleep(steady_s)
    wall = time.monotonic() - wall0
    res.leader_cpu_pct = (_proc_cpu_s(pid) - cpu0) / wall * 100
    res.load_cpu_pct = (_proc_cpu_s(os.getpid()) - own0) / wall * 100
    res.heartbeat_ms = _pcts(stats.heartbeat_ms)
    res.lag_ms_p99 = _pcts(stats.lag_ms)[1]
    for name, a in cluster.agents.items():
        if a.proc is not None:
            res.rss_mb[name] = _rss_mb(a.proc.pid)
    # Kill the leader. The agents whose server it was fail over to another;
    # every agent must heartbeat again and have no failed sync pending.
    t_kill = time.time()
    cluster.kill(leader, signal.SIGKILL)
    res.new_leader_s = await trio.to_thread.run_sync(
        lambda: _timed(lambda: cluster.leader(timeout=60))
    )
    await _until(
        lambda: all(s.recovered_since(t_kill) for s in sims),
        300,
        "every agent heartbeating and in sync again",
        lambda: _progress(sims, t_kill, stats),
    )
    res.resync_s = time.time() - t_kill


def _timed(fn: Any) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def run_fleet(
    root: Path,
    *,
    agents: int,
    subnet: str,
    source_octet: int,
    names: int = 0,
    steady_s: float = 10.0,
) -> FleetResult:
    """Start a 3-server cluster on ``subnet``, run ``agents`` simulated
    agents (sources 127.<source_octet>.x.y) and return the figures."""
    names = names or max(1, agents * SERVICES_PER_AGENT // 20)  # ~20 instances per name
    with running_meshd(root, subnet) as cluster:
        return trio.run(_drive, cluster, agents, names, steady_s, source_octet)


def report(r: FleetResult) -> None:
    if r.error:
        print(f"NOT FINISHED: {r.error}")
    hb50, hb99, hbmax = r.heartbeat_ms
    w50, w99, wmax = r.write_ms
    print(f"{'agents (5 services, 1 TTL check each, 2 watches + node watch)':<64} {r.agents:>8}")
    print(f"{'time until every agent joined and synced (s)':<64} {r.join_s:>8.1f}")
    label = "catalog writes while joining: p50 / p99 / max (ms)"
    print(f"{label:<64} {w50:>8.1f} {w99:8.1f} {wmax:8.1f}")
    print(f"{'heartbeats, steady: p50 / p99 / max (ms)':<64} {hb50:>8.1f} {hb99:8.1f} {hbmax:8.1f}")
    print(f"{'leader CPU while steady (% of one core)':<64} {r.leader_cpu_pct:>8.0f}")
    for name, mb in sorted(r.rss_mb.items()):
        print(f"{'RSS ' + name + ' (MB)':<64} {mb:>8.0f}")
    print(f"{'load process scheduler lag p99 (ms)':<64} {r.lag_ms_p99:>8.1f}")
    # CPU time, not wall time: comparable across runs on a shared machine.
    print(f"{'load process CPU while steady (% of one core)':<64} {r.load_cpu_pct:>8.0f}")
    print(f"{'nodes flapping (serfHealth critical; must be 0)':<64} {r.flapping:>8}")
    print(f"{'leader killed: new leader after (s)':<64} {r.new_leader_s:>8.2f}")
    print(f"{'leader killed: every agent heartbeating, in sync after (s)':<64} {r.resync_s:>8.2f}")
    want = r.agents * SERVICES_PER_AGENT
    lost = (r.agents - r.nodes_after) + (want - r.instances_after)
    print(
        f"{'after: nodes / instances / critical (lost items)':<64} "
        f"{r.nodes_after:>8} {r.instances_after:8} {r.critical_after:8}  (lost {lost})"
    )
    print(f"{'heartbeat calls that failed (all phases)':<64} {r.heartbeat_failures:>8}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 50 agents")
    p.add_argument("--agents", type=int, default=None)
    p.add_argument("--steady", type=float, default=None, help="steady seconds (default 20)")
    p.add_argument("--subnet", default="127.0.91")
    p.add_argument("--source-octet", type=int, default=91)
    args = p.parse_args(argv)
    agents = args.agents or (50 if args.quick else 2000)
    steady = args.steady if args.steady is not None else (3.0 if args.quick else 20.0)
    with tempfile.TemporaryDirectory(prefix="meshd-fleet-bench-") as tmp:
        r = run_fleet(
            Path(tmp),
            agents=agents,
            subnet=args.subnet,
            source_octet=args.source_octet,
            steady_s=steady,
        )
    report(r)
    if r.heartbeat_ms[1]:
        print(
            f"{'heartbeat p99 / p50':<64} {r.heartbeat_ms[1] / max(r.heartbeat_ms[0], 1e-9):>8.1f}x"
        )


if __name__ == "__main__":
    main()
