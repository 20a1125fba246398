"""Three real server processes: the ``consul`` service lists every server, and
a TTL session expires across a leader kill -9 (the new leader restarts the
timers at the full TTL, so the session outlives the old deadline but is not
kept forever)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TTL = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAgentCluster]:
    c = LocalAgentCluster(tmp_path_factory.mktemp("compat"), clients=1, subnet="127.0.33")
    c.start_all()
    try:
        c.wait_until(lambda: _consul_nodes(c, "server-1") == _servers(c), 60, "3 consul instances")
        yield c
    finally:
        c.stop_all()


def _servers(c: LocalAgentCluster) -> set[str]:
    return {n for n, a in c.agents.items() if a.server}


def _consul_nodes(c: LocalAgentCluster, agent: str) -> set[str]:
    status, rows, _ = c.get(agent, "/v1/catalog/service/consul?stale", timeout=2)
    return {r["Node"] for r in rows} if status == 200 else set()


def test_every_server_is_an_instance_of_the_consul_service(cluster: LocalAgentCluster) -> None:
    for agent in cluster.alive():
        status, rows, _ = cluster.get(agent, "/v1/catalog/service/consul")
        assert status == 200
        by_node = {r["Node"]: r for r in rows}
        assert set(by_node) == _servers(cluster)
        for name, row in by_node.items():
            assert row["ServiceID"] == "consul" and row["ServicePort"] == 8300
            assert row["Address"] == cluster.agents[name].ip
        status, entries, _ = cluster.get(agent, "/v1/health/service/consul?passing")
        assert status == 200 and len(entries) == 3


def _sessions(c: LocalAgentCluster, agent: str) -> set[str] | None:
    status, rows, _ = c.get(agent, "/v1/session/list", timeout=2)
    return {r["ID"] for r in rows} if status == 200 else None


def test_a_ttl_session_expires_after_a_leader_kill(cluster: LocalAgentCluster) -> None:
    leader = cluster.leader()
    follower = next(n for n in sorted(_servers(cluster)) if n != leader)
    status, body, _ = cluster.request(follower, "PUT", "/v1/session/create", {"TTL": "10s"})
    assert status == 200, body
    session = body["ID"]
    created = time.monotonic()
    status, ok, _ = cluster.request(follower, "PUT", f"/v1/kv/ha/leader?acquire={session}", "me")
    assert (status, ok) == (200, True)
    # A session renewed through a client agent (client -> server -> leader) lives on.
    status, body, _ = cluster.request("client-1", "PUT", "/v1/session/create", {"TTL": "10s"})
    assert status == 200, body
    kept = body["ID"]
    # Kill the leader 8 s into the TTL: its timer would have fired 12 s later.
    time.sleep(max(0.0, created + 8 - time.monotonic()))
    assert session in (_sessions(cluster, follower) or set())
    killed = time.monotonic()
    cluster.kill(leader)
    new_leader = cluster.leader(timeout=30)
    assert new_leader != leader
    assert session in (_sessions(cluster, follower) or set())

    def gone() -> bool:
        status, _, _ = cluster.request("client-1", "PUT", f"/v1/session/renew/{kept}", timeout=10)
        assert status == 200, f"renewing {kept} through the client: {status}"
        listed = _sessions(cluster, follower)
        if listed is not None and session not in listed:
            assert kept in listed
            return True
        time.sleep(1)
        return False

    cluster.wait_until(gone, 60, "the session expired under the new leader")
    after_kill = time.monotonic() - killed
    # The new leader's timer ran the full 2 x TTL from its election (after the kill).
    assert after_kill >= 2 * TTL - 1, f"expired {after_kill:.1f}s after the kill"
    status, rows, _ = cluster.get(follower, "/v1/kv/ha/leader")
    assert status == 200 and "Session" not in rows[0]
    assert kept in (_sessions(cluster, "client-1") or set())
