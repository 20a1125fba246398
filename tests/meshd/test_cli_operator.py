"""``meshd operator raft`` against a dev agent and a real 3-server cluster."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.meshd.cli_support import invoke, one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent
from tools.local_cluster import LocalAgentCluster

pytestmark = pytest.mark.e2e

HEADERS = ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


def peers_table(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    assert lines[0].split() == HEADERS
    return [line.split() for line in lines[1:]]


async def test_list_peers_shows_the_lone_leader_as_table_and_json() -> None:
    async with dev_agent() as (agent, api):
        result = await run_cli(["operator", "raft", "list-peers", *addr(api)])
        assert result.exit_code == 0, result.output
        [row] = peers_table(result.stdout)
        assert row[:2] == ["dev-node", agent.node_id]
        assert row[3:5] == ["leader", "true"]
        result = await run_cli(["operator", "raft", "list-peers", "-format", "json", *addr(api)])
        [server] = json.loads(result.stdout)["Servers"]
        assert server["ID"] == agent.node_id and server["Leader"] is True
        result = await run_cli(["operator", "raft", "list-peers", "-stale", *addr(api)])
        assert result.exit_code == 0 and len(peers_table(result.stdout)) == 1


async def test_raft_changes_that_cannot_apply_are_one_line_errors() -> None:
    async with dev_agent() as (_agent, api):
        line = one_error_line(await run_cli(["operator", "raft", "remove-peer", *addr(api)]))
        assert line == "Error! Give exactly one of -id or -address"
        args = ["operator", "raft", "remove-peer", "-id", "no-such-server", *addr(api)]
        line = one_error_line(await run_cli(args))
        assert line.startswith("Error removing peer: Unexpected response code: ")
        assert "no-such-server" in line
        args = ["operator", "raft", "transfer-leader", *addr(api)]
        line = one_error_line(await run_cli(args))  # a lone server has nobody to hand over to
        assert line.startswith("Error transferring leadership: Unexpected response code: ")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAgentCluster]:
    c = LocalAgentCluster(tmp_path_factory.mktemp("cli-cluster"), clients=0, subnet="127.0.7")
    c.start_all()
    try:
        c.leader(30)
        c.wait_until(lambda: len(raft_servers(c)) == 3, 30, "three raft servers")
        yield c
    finally:
        c.stop_all()


def raft_servers(c: LocalAgentCluster) -> list[dict[str, object]]:
    status, body, _ = c.get(c.alive()[0], "/v1/operator/raft/configuration", timeout=2)
    return list(body["Servers"]) if status == 200 else []


def cli_on(c: LocalAgentCluster, name: str, *args: str) -> list[str]:
    result = invoke([*args, "-http-addr", c.agents[name].http])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


@pytest.mark.slow
def test_transfer_leader_then_remove_a_dead_peer(
    cluster: LocalAgentCluster, tmp_path: Path
) -> None:
    rows = peers_table("\n".join(cli_on(cluster, "server-1", "operator", "raft", "list-peers")))
    assert sorted(r[0] for r in rows) == ["server-1", "server-2", "server-3"]
    assert [r[3] for r in rows].count("leader") == 1
    old = cluster.leader()
    ids = {r[0]: r[1] for r in rows}
    target = next(n for n in ids if n != old)

    out = cli_on(cluster, old, "operator", "raft", "transfer-leader", "-id", ids[target])
    assert out == ["Success"]
    cluster.wait_until(lambda: cluster.leader() == target, 10, f"{target} leading")

    victim = next(n for n in ids if n not in (target, old))
    cluster.kill(victim, signal.SIGKILL)
    out = cli_on(cluster, target, "operator", "raft", "remove-peer", "-id", ids[victim])
    assert out == [f'Removed peer with id "{ids[victim]}"']
    rows = peers_table("\n".join(cli_on(cluster, target, "operator", "raft", "list-peers")))
    assert sorted(r[0] for r in rows) == sorted([old, target])
