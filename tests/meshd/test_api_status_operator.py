"""/v1/status and /v1/operator against a dev agent and an in-process cluster
of three servers and one client agent over mTLS (loopback)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.agent import server_ops
from meshd.agent.agent import Agent
from meshd.agent.snapshot_archive import decode_archive
from meshd.agent_tls import create_ca, create_cert, write_pem
from meshd.config import load_config
from tests.meshd.harness import APIClient, dev_agent, free_port
from tests.meshd.inproc import inproc_agent


async def wait_for(pred: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not await pred():
            await trio.sleep(0.1)


# ------------------------------------------------------------------ dev agent


@pytest.mark.e2e
async def test_status_on_a_dev_agent() -> None:
    async with dev_agent() as (agent, api):
        addr = f"127.0.0.1:{agent.config.ports.server}"
        r = await api.get("/v1/status/leader")
        assert (r.status, r.json()) == (200, addr)
        assert r.headers["content-type"] == "application/json"
        assert (await api.get("/v1/status/peers")).json() == [addr]
        assert (await api.get("/v1/status/leader?dc=elsewhere")).status == 400


async def test_raft_configuration_and_autopilot_on_a_dev_agent(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (agent, api):
        r = await api.get("/v1/operator/raft/configuration")
        assert r.status == 200
        conf = r.json()
        assert conf["Index"] > 0
        assert conf["Servers"] == [
            {
                "ID": agent.node_id,
                "Node": "dev-node",
                "Address": f"127.0.0.1:{agent.config.ports.server}",
                "Leader": True,
                "ProtocolVersion": "3",
                "Voter": True,
            }
        ]
        assert (await api.get("/v1/operator/raft/configuration?stale")).json()["Servers"]
        health = (await api.get("/v1/operator/autopilot/health")).json()
        assert health["Healthy"] is True and health["FailureTolerance"] == 0
        [srv] = health["Servers"]
        assert srv["ID"] == agent.node_id and srv["Name"] == "dev-node"
        assert srv["Leader"] and srv["Voter"] and srv["Healthy"]
        assert srv["SerfStatus"] == "alive" and srv["LastContact"] == "0s"
        assert srv["LastIndex"] > 0 and srv["LastTerm"] > 0
        assert srv["StableSince"].endswith("Z")
        ap = (await api.get("/v1/operator/autopilot/configuration")).json()
        assert ap["CleanupDeadServers"] is True and ap["MaxTrailingLogs"] == 250
        assert ap["LastContactThreshold"] == "1s"


async def test_raft_changes_that_a_single_server_refuses(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        r = await api.delete("/v1/operator/raft/peer")
        assert r.status == 400 and "Must specify either ?id" in r.text
        r = await api.delete("/v1/operator/raft/peer?address=10.9.9.9:8300")
        assert r.status == 500 and 'address "10.9.9.9:8300" was not found' in r.text
        r = await api.delete("/v1/operator/raft/peer?id=nope")
        assert r.status == 500 and 'id "nope" was not found' in r.text
        r = await api.request("POST", "/v1/operator/raft/transfer-leader")
        assert r.status == 500 and "cannot transfer leadership" in r.text
        assert (await api.get("/v1/status/leader")).json().endswith(str(agent.config.ports.server))
        assert (await api.put("/v1/operator/raft/transfer-leader")).status == 405


# ------------------------------------------------------------------- cluster


@dataclass
class Node:
    name: str
    agent: Agent
    api: APIClient

    @property
    def rpc(self) -> str:
        return self.agent.rpc_address


def _write_config(
    directory: Path, name: str, server: bool, servers: int, join: list[str], pems: Any
) -> Path:
    directory.mkdir()
    ca_cert, ca_key = pems
    cert, key = create_cert(ca_cert, ca_key, kind="server" if server else "client")
    write_pem(directory / "ca.pem", ca_cert)
    write_pem(directory / "cert.pem", cert)
    write_pem(directory / "key.pem", key, private=True)
    rpc_port = int(join[int(name[1:])].rpartition(":")[2]) if server else free_port()
    config = {
        "node_name": name,
        "server": server,
        "bootstrap_expect": servers if server else 0,
        "data_dir": str(directory / "data"),
        "bind_addr": "127.0.0.1",
        "advertise_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "retry_join": join,
        "retry_interval": "1s",
        "performance": {"raft_multiplier": 1},
        "ports": {"http": free_port(), "dns": free_port(), "server": rpc_port},
        "tls": {
            "defaults": {
                "ca_file": str(directory / "ca.pem"),
                "cert_file": str(directory / "cert.pem"),
                "key_file": str(directory / "key.pem"),
            }
        },
    }
    path = directory / "agent.json"
    path.write_text(json.dumps(config))
    return path


@asynccontextmanager
async def cluster(tmp_path: Path, servers: int = 3) -> AsyncIterator[list[Node]]:
    """``servers`` servers s0..sN-1 and one client c0, leader elected, every
    server in the Raft configuration."""
    pems = create_ca()
    join = [f"127.0.0.1:{free_port()}" for _ in range(servers)]
    names = [f"s{i}" for i in range(servers)] + ["c0"]
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        for name in names:
            path = _write_config(tmp_path / name, name, name[0] == "s", servers, join, pems)
            config, _ = load_config([str(path)], [], {}, dev=False)
            agent = Agent(config)
            await nursery.start(agent.run)
            host, port = agent.http_addresses[0]
            nodes.append(Node(name, agent, APIClient(host, port)))

        async def formed() -> bool:
            for n in nodes:
                r = await n.api.get("/v1/status/peers")
                if r.status != 200 or len(r.json()) != servers:
                    return False
                if not (await n.api.get("/v1/status/leader")).json():
                    return False
            return True

        await wait_for(formed, 30)
        yield nodes
        nursery.cancel_scope.cancel()


async def leader_of(nodes: list[Node]) -> Node:
    addr = (await nodes[0].api.get("/v1/status/leader")).json()
    return next(n for n in nodes if n.rpc == addr)


@pytest.mark.e2e
@pytest.mark.slow
async def test_cluster_status_members_operator_snapshot_and_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so forwarded saves take several Snapshot.Chunk round trips.
    monkeypatch.setattr(server_ops, "CHUNK", 200)
    async with cluster(tmp_path) as nodes:
        servers, client = nodes[:3], nodes[3]
        server_addrs = sorted(n.rpc for n in servers)
        leader = await leader_of(nodes)
        follower = next(n for n in servers if n is not leader)
        for n in nodes:
            assert (await n.api.get("/v1/status/leader")).json() == leader.rpc
            assert sorted((await n.api.get("/v1/status/peers")).json()) == server_addrs

        async def named_in_catalog() -> bool:
            nodes_ = (await client.api.get("/v1/catalog/nodes")).json()
            return {x["Node"] for x in nodes_} == {"s0", "s1", "s2", "c0"}

        await wait_for(named_in_catalog)
        for via in (follower, client):
            conf = (await via.api.get("/v1/operator/raft/configuration")).json()
            assert sorted(s["Address"] for s in conf["Servers"]) == server_addrs
            assert {s["Node"] for s in conf["Servers"]} == {"s0", "s1", "s2"}
            assert [s["Address"] for s in conf["Servers"] if s["Leader"]] == [leader.rpc]
            assert all(s["Voter"] and s["ProtocolVersion"] == "3" for s in conf["Servers"])
        stale = (await follower.api.get("/v1/operator/raft/configuration?stale")).json()
        assert len(stale["Servers"]) == 3

        members = (await client.api.get("/v1/agent/members")).json()
        roles = {m["Name"]: m["Tags"]["role"] for m in members}
        assert roles == {"s0": "consul", "s1": "consul", "s2": "consul", "c0": "node"}
        assert all(m["Status"] == 1 for m in members)
        by_name = {m["Name"]: m for m in members}
        assert by_name["s1"]["Tags"]["port"] == nodes[1].rpc.rpartition(":")[2]
        assert by_name["s0"]["Tags"]["expect"] == "3"
        me = (await client.api.get("/v1/agent/self")).json()
        assert me["Member"]["Tags"]["role"] == "node" and me["Stats"]["consul"]["server"] == "false"

        async def healthy() -> bool:
            r = await client.api.get("/v1/operator/autopilot/health")
            return r.status == 200 and r.json()["FailureTolerance"] == 1

        await wait_for(healthy)
        health = (await follower.api.get("/v1/operator/autopilot/health")).json()
        assert health["Healthy"] and len(health["Servers"]) == 3
        assert [s["Name"] for s in health["Servers"] if s["Leader"]] == [leader.name]

        await _snapshots_are_forwarded_and_restore_is_refused(leader, follower, client)
        await _events_reach_every_agent(servers, client)


async def _snapshots_are_forwarded_and_restore_is_refused(
    leader: Node, follower: Node, client: Node
) -> None:
    await client.api.put("/v1/catalog/register", {"Node": "ext", "Address": "10.1.1.1"})
    archives = []
    assert server_ops.CHUNK < 500
    for via in (client, follower, leader):
        r = await via.api.get("/v1/snapshot")
        assert r.status == 200, r.text
        meta, _ = decode_archive(r.body)
        assert len(r.body) > 3 * server_ops.CHUNK
        assert meta.node == leader.name and int(r.headers["x-consul-index"]) == meta.index
        archives.append(r.body)
    await client.api.put("/v1/catalog/register", {"Node": "ext2", "Address": "10.1.1.2"})
    for via in (client, follower, leader):
        r = await via.api.put("/v1/snapshot", raw=archives[0])
        assert r.status == 501 and "single-server" in r.text, r.text
        r = await via.api.put("/v1/snapshot", raw=archives[0][:-1])
        assert r.status == 400
    names = {n["Node"] for n in (await leader.api.get("/v1/catalog/nodes")).json()}
    assert {"ext", "ext2"} <= names


async def _events_reach_every_agent(servers: list[Node], client: Node) -> None:
    r = await client.api.put("/v1/event/fire/from-client", raw=b"x")
    fired = r.json()["ID"]
    r = await servers[1].api.put("/v1/event/fire/from-server")
    for n in [*servers, client]:
        listed = [e["Name"] for e in (await n.api.get("/v1/event/list")).json()]
        assert listed == ["from-client", "from-server"], (n.name, listed)
    # A blocking list on the client wakes for an event fired on a server.
    r = await client.api.get("/v1/event/list")
    index = r.headers["x-consul-index"]
    got: list[list[str]] = []

    async def block() -> None:
        res = await client.api.get(f"/v1/event/list?index={index}&wait=10s")
        got.append([e["Name"] for e in res.json()])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(block)
        # Parked: the client's handler waits on its event ring (no fixed
        # sleep, which on a loaded machine could end before the GET arrives).
        with trio.fail_after(30):
            while not client.agent.events._changed.statistics().tasks_waiting:
                await trio.sleep(0.01)
        assert not got
        await servers[2].api.put("/v1/event/fire/late")
    assert got == [["from-client", "from-server", "late"]]
    assert fired


@pytest.mark.e2e
@pytest.mark.slow
async def test_cluster_transfer_remove_and_force_leave(tmp_path: Path) -> None:
    async with cluster(tmp_path) as nodes:
        servers, client = nodes[:3], nodes[3]
        leader = await leader_of(nodes)
        f1, f2 = [n for n in servers if n is not leader]

        r = await client.api.request(
            "POST", f"/v1/operator/raft/transfer-leader?id={f1.agent.node_id}"
        )
        assert (r.status, r.json()) == (200, {"Success": True})

        async def moved() -> bool:
            return bool((await f2.api.get("/v1/status/leader")).json() == f1.rpc)

        await wait_for(moved)

        r = await leader.api.delete(f"/v1/operator/raft/peer?address={f2.rpc}")
        assert r.status == 200, r.text

        async def two_left() -> bool:
            conf = (await f1.api.get("/v1/operator/raft/configuration")).json()
            return sorted(s["Address"] for s in conf["Servers"]) == sorted([leader.rpc, f1.rpc])

        await wait_for(two_left)

        async def client_registered() -> bool:
            nodes_ = (await f1.api.get("/v1/catalog/nodes")).json()
            return "c0" in {n["Node"] for n in nodes_}

        await wait_for(client_registered)
        assert (await f1.api.put("/v1/agent/force-leave/c0")).status == 200
        # c0 is alive: as in Consul it shows leaving (2) and is not deregistered.
        catalog = {n["Node"] for n in (await f1.api.get("/v1/catalog/nodes")).json()}
        assert "c0" in catalog
        members = {
            m["Name"]: m["Status"] for m in (await leader.api.get("/v1/agent/members")).json()
        }
        assert members["c0"] == 2 and {leader.name, f1.name} <= set(members)

        r = await client.api.put(f"/v1/agent/force-leave/{leader.name}")
        assert r.status == 200, r.text
        conf = (await f1.api.get("/v1/operator/raft/configuration")).json()
        assert [s["Address"] for s in conf["Servers"]] == [f1.rpc]
        r = await client.api.put("/v1/agent/force-leave/nobody")
        assert r.status == 500 and "No node found" in r.text
