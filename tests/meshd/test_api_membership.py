"""PUT /v1/agent/join and /v1/agent/force-leave as Consul answers them: a join
returns once the servers know the new member, and a live member that is
force-left shows Serf's status 2 (leaving) until it refutes it.
(https://developer.hashicorp.com/consul/api-docs/agent#join-agent)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.agent import members as members_mod
from meshd.agent.agent import Agent
from meshd.agent_tls import create_ca, create_cert, write_pem
from meshd.config import load_config
from tests.meshd.harness import APIClient, free_port
from tests.meshd.inproc import inproc_agent


async def wait_for(pred: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while not await pred():
            await trio.sleep(0.1)


def _config(directory: Path, name: str, server: bool, pems: Any, rpc_port: int) -> Path:
    directory.mkdir()
    cert, key = create_cert(pems[0], pems[1], kind="server" if server else "client")
    write_pem(directory / "ca.pem", pems[0])
    write_pem(directory / "cert.pem", cert)
    write_pem(directory / "key.pem", key, private=True)
    config = {
        "node_name": name,
        "server": server,
        "bootstrap_expect": 1 if server else 0,
        "data_dir": str(directory / "data"),
        "bind_addr": "127.0.0.1",
        "advertise_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
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
async def server_and_lone_client(
    tmp_path: Path,
) -> AsyncIterator[tuple[Agent, APIClient, APIClient]]:
    """A one-server cluster and a client agent that has joined nothing yet."""
    pems = create_ca()
    rpc = free_port()
    apis = []
    agents = []
    async with trio.open_nursery() as nursery:
        for name, server in (("s0", True), ("c0", False)):
            path = _config(tmp_path / name, name, server, pems, rpc if server else free_port())
            config, _ = load_config([str(path)], [], {}, dev=False)
            agent = Agent(config)
            await nursery.start(agent.run)
            agents.append(agent)
            apis.append(APIClient(*agent.http_addresses[0]))

        async def leader() -> bool:
            return bool((await apis[0].get("/v1/status/leader")).json())

        await wait_for(leader)
        yield agents[0], apis[0], apis[1]
        nursery.cancel_scope.cancel()


def _status(members: list[dict[str, Any]], name: str) -> int | None:
    return next((m["Status"] for m in members if m["Name"] == name), None)


@pytest.mark.e2e
@pytest.mark.slow
async def test_join_returns_after_the_servers_know_the_member_and_force_leave_marks_it_leaving(
    tmp_path: Path,
) -> None:
    async with server_and_lone_client(tmp_path) as (server, server_api, client_api):
        assert _status((await server_api.get("/v1/agent/members")).json(), "c0") is None
        await trio.sleep(3)  # the lone client's anti-entropy has been failing, backing off
        r = await client_api.put(f"/v1/agent/join/{server.rpc_address}")
        assert r.status == 200, r.text
        # No waiting: the answer came after the exchange, as Consul's does.
        members = (await server_api.get("/v1/agent/members")).json()
        assert _status(members, "c0") == members_mod.ALIVE
        assert _status((await client_api.get("/v1/agent/members")).json(), "s0") == 1

        # A live member force-left shows leaving (2), stays in the catalog,
        # and is alive again once the leave intent is refuted.
        r = await server_api.put("/v1/agent/force-leave/c0")
        assert r.status == 200, r.text
        members = (await server_api.get("/v1/agent/members")).json()
        assert _status(members, "c0") == members_mod.LEAVING
        nodes = {n["Node"] for n in (await server_api.get("/v1/catalog/nodes")).json()}
        assert "c0" in nodes

        async def alive_again() -> bool:
            ms = (await server_api.get("/v1/agent/members")).json()
            return _status(ms, "c0") == members_mod.ALIVE

        await wait_for(alive_again)


def test_leaving_marks_expire_after_their_hold() -> None:
    marks = members_mod.LeavingMarks(hold=5.0)
    marks.mark("c0", 100.0)
    assert marks.current(104.9) == {"c0"}
    assert marks.current(105.0) == set()


async def test_a_failed_member_force_left_shows_left_and_leaves_the_catalog(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        failed = {
            "Node": "gone",
            "Address": "10.0.0.9",
            "NodeMeta": {"consul-network-segment": ""},
            "Check": {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "critical"},
        }
        assert (await api.put("/v1/catalog/register", failed)).status == 200
        members = (await api.get("/v1/agent/members")).json()
        assert _status(members, "gone") == members_mod.FAILED
        assert (await api.put("/v1/agent/force-leave/gone")).status == 200
        members = (await api.get("/v1/agent/members")).json()
        assert _status(members, "gone") == members_mod.LEFT
        nodes = {n["Node"] for n in (await api.get("/v1/catalog/nodes")).json()}
        assert "gone" not in nodes
        # ?prune drops a failed member from the list at once.
        assert (await api.put("/v1/catalog/register", {**failed, "Node": "gone2"})).status == 200
        assert (await api.put("/v1/agent/force-leave/gone2?prune")).status == 200
        members = (await api.get("/v1/agent/members")).json()
        assert _status(members, "gone2") is None
        # Back (re-registered): listed from the catalog again, not as left.
        alive = {**failed, "Check": {**failed["Check"], "Status": "passing"}}
        assert (await api.put("/v1/catalog/register", alive)).status == 200
        members = (await api.get("/v1/agent/members")).json()
        assert [m["Status"] for m in members if m["Name"] == "gone"] == [members_mod.ALIVE]


def test_left_members_are_kept_until_reaped_or_back() -> None:
    marks = members_mod.LeavingMarks(reap=10.0)
    marks.left({"Name": "n1", "Status": 4}, 0.0)
    assert [m["Status"] for m in marks.left_members(5.0, [])] == [members_mod.LEFT]
    assert marks.left_members(5.0, ["n1"]) == []  # back: forgotten
    marks.left({"Name": "n2", "Status": 4}, 0.0)
    assert marks.left_members(10.0, []) == []
