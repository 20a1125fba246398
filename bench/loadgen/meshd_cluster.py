"""A 3-server meshd cluster of real processes for a benchmark, stopped
whatever happens (``running_meshd`` is a context manager)."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.local_cluster import LocalAgentCluster

# Benchmarks open thousands of connections from one address; a real
# deployment spreads them over hosts, so the per-client cap (Consul's
# limits.http_max_conns_per_client, 200) is lifted rather than measured.
# Not with 0: Consul reads 0 as "no limit", but meshd's HTTP server then
# answers every connection with 429.
BENCH_CONFIG: dict[str, Any] = {"limits": {"http_max_conns_per_client": 100_000}}


class AgentDied(RuntimeError):
    """An agent process exited while the benchmark needed it."""


def check_alive(cluster: LocalAgentCluster, expected: list[str]) -> None:
    """Raise ``AgentDied`` with the tail of its log if one of ``expected`` exited."""
    for name in expected:
        proc = cluster.agents[name].proc
        if proc is None or proc.poll() is not None:
            tail = "\n".join(cluster.logs(name).splitlines()[-15:])
            raise AgentDied(f"meshd agent {name} exited:\n{tail}")


def wait_ready(cluster: LocalAgentCluster, timeout: float = 60) -> str:
    """Until every live server knows the leader and a KV write through it
    succeeds; returns the leader's name. Raises ``TimeoutError``, or
    ``AgentDied`` as soon as an agent exits."""
    deadline = time.monotonic() + timeout
    expected = cluster.alive()
    while True:
        check_alive(cluster, expected)
        try:
            leader = cluster.leader(timeout=1)
            break
        except TimeoutError:
            if time.monotonic() > deadline:
                raise

    def all_know_leader() -> bool:
        return all(cluster.get(n, "/v1/status/leader", timeout=2)[1] for n in cluster.alive())

    cluster.wait_until(all_know_leader, max(1.0, deadline - time.monotonic()), "servers know it")

    def write_ok() -> bool:
        status, body, _ = cluster.request(leader, "PUT", "/v1/kv/bench-ready", body="1")
        return status == 200 and body is True

    cluster.wait_until(write_ok, max(1.0, deadline - time.monotonic()), "a KV write")
    return leader


@contextlib.contextmanager
def running_meshd(
    root: Path,
    subnet: str,
    extra_config: dict[str, Any] | None = None,
    *,
    own_sessions: bool = False,
) -> Iterator[LocalAgentCluster]:
    """A started, ready 3-server cluster on ``subnet``.1-3; killed on exit.
    ``own_sessions``: each server in its own session (own autogroup CPU share)."""
    config = {**BENCH_CONFIG, **(extra_config or {})}
    cluster = LocalAgentCluster(
        root, servers=3, clients=0, subnet=subnet, extra_config=config, own_sessions=own_sessions
    )
    try:
        cluster.start_all()
        wait_ready(cluster)
        yield cluster
    finally:
        for name in cluster.agents:
            cluster.kill(name, signal.SIGKILL)
