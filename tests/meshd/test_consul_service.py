"""The servers' ``consul`` service (Consul's leader.go handleAliveMember):
the reconciliation plan, and a real dev agent through catalog, health and DNS."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rdatatype
import pytest
import trio

from meshd.agent.consul_service import plan, server_service
from raft.types import Server as RaftServer
from raft.types import Suffrage
from registry.commands import DeregisterRequest, RegisterRequest
from registry.records import Node
from tests.meshd.harness import dev_agent

S1 = RaftServer("id-1", "10.0.0.1:8300")
S2 = RaftServer("id-2", "10.0.0.2:8301", Suffrage.NONVOTER)
NODES = [Node("one", id="id-1"), Node("two", id="id-2"), Node("client", id="id-9")]


def test_plan_registers_a_consul_instance_on_every_server_node() -> None:
    cmds = plan([S1, S2], NODES, {}, version="1.2.3")
    assert [type(c) for c in cmds] == [RegisterRequest, RegisterRequest]
    regs = [c for c in cmds if isinstance(c, RegisterRequest)]
    assert [c.node for c in regs] == ["one", "two"]
    assert all(c.skip_node_update for c in regs)
    one, two = (c.service for c in regs)
    assert one is not None and two is not None
    assert (one.service, one.id, one.port) == ("consul", "consul", 8300)
    assert (two.port, two.meta["non_voter"], one.meta["non_voter"]) == (8301, "true", "false")
    assert one.meta["version"] == "1.2.3" and one.meta["raft_version"] == "3"


def test_plan_is_empty_when_the_catalog_matches_and_repairs_drift() -> None:
    current = {"one": server_service(S1, "v"), "two": server_service(S2, "v")}
    assert plan([S1, S2], NODES, current, version="v") == []
    moved = RaftServer("id-1", "10.0.0.1:9300")
    [cmd] = plan([moved, S2], NODES, current, version="v")
    assert isinstance(cmd, RegisterRequest) and cmd.service is not None
    assert cmd.service.port == 9300


def test_plan_removes_the_service_of_a_node_that_is_no_server() -> None:
    current = {"one": server_service(S1, "v"), "two": server_service(S2, "v")}
    [cmd] = plan([S1], NODES, current, version="v")
    assert cmd == DeregisterRequest(node="two", service_id="consul", now=cmd.now)


def test_plan_waits_for_a_server_node_missing_from_the_catalog() -> None:
    assert plan([RaftServer("id-7", "10.0.0.7:8300")], NODES, {}, version="v") == []


@pytest.mark.e2e
async def test_a_dev_agent_registers_itself_as_the_consul_service() -> None:
    async with dev_agent() as (agent, api):
        port = agent.config.ports.server
        with trio.fail_after(15):
            while True:
                rows = (await api.get("/v1/catalog/service/consul")).json()
                if rows:
                    break
                await trio.sleep(0.1)
        [row] = rows
        assert (row["Node"], row["ServiceID"], row["ServiceName"]) == (
            "dev-node",
            "consul",
            "consul",
        )
        assert row["ServicePort"] == port and row["Address"] == "127.0.0.1"
        assert row["ServiceWeights"] == {"Passing": 1, "Warning": 1}
        [entry] = (await api.get("/v1/health/service/consul?passing")).json()
        assert entry["Service"]["ID"] == "consul"
        assert [c["CheckID"] for c in entry["Checks"]] == ["serfHealth"]
        # the agent's own services stay its own: anti-entropy leaves it alone
        assert "consul" not in (await api.get("/v1/agent/services")).json()
        await api.put("/v1/agent/service/register", {"Name": "web", "Port": 80})
        assert agent.sync is not None
        await agent.sync.sync(full=True)
        assert (await api.get("/v1/catalog/service/consul")).json() != []
        addr = agent.dns_addresses[0]
        q = dns.message.make_query("consul.service.consul", "SRV")
        resp = await trio.to_thread.run_sync(
            lambda: dns.query.udp(q, addr[0], port=addr[1], timeout=3)
        )
        assert [r.port for rr in resp.answer for r in rr] == [port]
        assert any(rr.rdtype == dns.rdatatype.A for rr in resp.additional)
