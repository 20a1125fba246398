"""Node liveness and anti-entropy with real agent processes (1 server + 2
clients over mTLS): kill -9 of a client makes its services critical within
the liveness TTL and they pass again when it restarts; a catalog
deregistration of a live node is repaired by anti-entropy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TTL = 5.0  # raft_multiplier 1: heartbeat every 1 s, TTL 5 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAgentCluster]:
    c = LocalAgentCluster(tmp_path_factory.mktemp("live"), servers=1, clients=2, subnet="127.0.4")
    c.start_all()
    try:
        c.wait_until(
            lambda: all(len(c.get(a, "/v1/catalog/nodes")[1]) == 3 for a in c.alive()),
            30,
            "3 nodes",
        )
        yield c
    finally:
        c.stop_all()


def passing_nodes(c: LocalAgentCluster, service: str) -> list[str]:
    st, body, _ = c.get("server-1", f"/v1/health/service/{service}?passing")
    return sorted(r["Node"]["Node"] for r in body) if st == 200 else []


def serf(c: LocalAgentCluster, node: str) -> Any:
    _, checks, _ = c.get("server-1", f"/v1/health/node/{node}")
    return next((x["Status"] for x in checks if x["CheckID"] == "serfHealth"), None)


def test_killed_client_goes_critical_within_ttl_and_recovers(cluster: LocalAgentCluster) -> None:
    for client in ("client-1", "client-2"):
        st, _, _ = cluster.request(
            client, "PUT", "/v1/agent/service/register", {"Name": "app", "Port": 80}
        )
        assert st == 200
    cluster.wait_until(
        lambda: passing_nodes(cluster, "app") == ["client-1", "client-2"], 5, "both pass"
    )
    killed = time.monotonic()
    cluster.kill("client-1")
    cluster.wait_until(
        lambda: passing_nodes(cluster, "app") == ["client-2"], TTL + 3, "client-1 critical"
    )
    took = time.monotonic() - killed
    assert took <= TTL + 2, f"critical after {took:.1f}s (TTL {TTL}s)"
    assert serf(cluster, "client-1") == "critical"
    cluster.start("client-1")
    cluster.wait_until(
        lambda: passing_nodes(cluster, "app") == ["client-1", "client-2"], 15, "back"
    )
    assert serf(cluster, "client-1") == "passing"


def test_catalog_deregistration_of_a_live_node_is_repaired(cluster: LocalAgentCluster) -> None:
    cluster.request("client-2", "PUT", "/v1/agent/service/register", {"Name": "db", "Port": 5432})
    cluster.wait_until(lambda: passing_nodes(cluster, "db") == ["client-2"], 5, "db registered")
    st, _, _ = cluster.request("server-1", "PUT", "/v1/catalog/deregister", {"Node": "client-2"})
    assert st == 200
    cluster.wait_until(lambda: passing_nodes(cluster, "db") == ["client-2"], 5, "db restored")


def test_steady_state_costs_no_raft_writes(cluster: LocalAgentCluster) -> None:
    def applied() -> int:
        _, body, _ = cluster.get("server-1", "/v1/operator/raft/configuration")
        return int(body["Index"])

    # Let the previous tests' repairs land: wait for 2 s without a write.
    last, still_since = applied(), time.monotonic()
    deadline = time.monotonic() + 20
    while time.monotonic() - still_since < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = applied()
        if now != last:
            last, still_since = now, time.monotonic()
    before = applied()
    time.sleep(4)  # four heartbeat rounds from three agents, one full-sync window
    assert applied() - before == 0, "heartbeats or syncs are writing to Raft in steady state"
