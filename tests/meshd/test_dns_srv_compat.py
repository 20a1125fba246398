"""DNS SRV answers as Consul's give them, against a real dev agent with
dnspython: one additional address record per SRV answer (three instances on
one node: three SRV and three A records), ``<hex ip>.addr.<dc>.<domain>``
targets for instances with an IP address of their own, and service names
matched without regard to case."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import trio

from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e


async def srv(addr: tuple[str, int], name: str, *, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, "SRV")
    fn = dns.query.tcp if tcp else dns.query.udp
    # one_rr_per_rrset: keep every record on the wire, duplicates included
    return await trio.to_thread.run_sync(
        lambda: fn(q, addr[0], port=addr[1], timeout=3, one_rr_per_rrset=True)
    )


def records(section: list[dns.rrset.RRset], rdtype: int) -> list[tuple[str, str]]:
    return [
        (str(rrset.name), r.to_text()) for rrset in section if rrset.rdtype == rdtype for r in rrset
    ]


async def register_three(api: APIClient, name: str, address: str = "") -> None:
    for i in range(3):
        body = {"Name": name, "ID": f"{name}-{i}", "Port": 8080 + i, "Address": address}
        assert (await api.put("/v1/agent/service/register", body)).status == 200
    with trio.fail_after(10):
        while len((await api.get(f"/v1/catalog/service/{name}")).json()) < 3:
            await trio.sleep(0.05)


async def test_three_instances_on_one_node_get_one_additional_record_each() -> None:
    async with dev_agent() as (agent, api):
        await register_three(api, "web")
        addr = agent.dns_addresses[0]
        for tcp in (False, True):
            resp = await srv(addr, "web.service.consul", tcp=tcp)
            answers = records(resp.answer, dns.rdatatype.SRV)
            assert sorted(int(v.split()[2]) for _, v in answers) == [8080, 8081, 8082]
            assert {v.split()[3] for _, v in answers} == {"dev-node.node.dc1.consul."}
            extra = records(resp.additional, dns.rdatatype.A)
            assert extra == [("dev-node.node.dc1.consul.", "127.0.0.1")] * 3, (tcp, resp)


async def test_an_instance_with_an_ip_address_gets_a_hex_addr_target() -> None:
    async with dev_agent() as (agent, api):
        await register_three(api, "api", address="127.0.0.1")
        resp = await srv(agent.dns_addresses[0], "api.service.dc1.consul")
        target = "7f000001.addr.dc1.consul."
        answers = records(resp.answer, dns.rdatatype.SRV)
        assert [v.split()[3] for _, v in answers] == [target] * 3
        assert records(resp.additional, dns.rdatatype.A) == [(target, "127.0.0.1")] * 3


async def test_service_names_match_without_regard_to_case() -> None:
    async with dev_agent() as (agent, api):
        body = {"Name": "Web", "ID": "Web-1", "Port": 9090}
        assert (await api.put("/v1/agent/service/register", body)).status == 200
        with trio.fail_after(10):
            while not (await api.get("/v1/catalog/service/Web")).json():
                await trio.sleep(0.05)
        for qname in ("web.service.consul", "Web.service.consul", "WEB.service.dc1.consul"):
            resp = await srv(agent.dns_addresses[0], qname)
            assert resp.rcode() == dns.rcode.NOERROR, (qname, resp)
            assert [int(v.split()[2]) for _, v in records(resp.answer, dns.rdatatype.SRV)] == [9090]
        resp = await srv(agent.dns_addresses[0], "webx.service.consul")
        assert resp.rcode() == dns.rcode.NXDOMAIN


async def test_node_names_match_without_regard_to_case() -> None:
    async with dev_agent() as (agent, api):
        body = {"Node": "Web01", "Address": "10.1.2.3"}
        assert (await api.put("/v1/catalog/register", body)).status == 200
        host, port = agent.dns_addresses[0]
        for qname in ("web01.node.consul", "WEB01.node.dc1.consul"):
            q = dns.message.make_query(qname, "A")
            resp = await trio.to_thread.run_sync(
                lambda q=q: dns.query.udp(q, host, port=port, timeout=3)
            )
            assert [r.address for rr in resp.answer for r in rr] == ["10.1.2.3"], (qname, resp)


async def test_an_instance_failing_its_check_leaves_the_answer_and_comes_back() -> None:
    # HAProxy's resolver pairs each SRV record with its additional record: a
    # backend that recovers must come back with both.
    async with dev_agent() as (agent, api):
        for i in range(3):
            body = {"Name": "be", "ID": f"be-{i}", "Port": 7000 + i, "Check": {"TTL": "30s"}}
            assert (await api.put("/v1/agent/service/register", body)).status == 200
            assert (await api.put(f"/v1/agent/check/pass/service:be-{i}")).status == 200
        addr = agent.dns_addresses[0]

        async def ports_answered(expected: list[int]) -> dns.message.Message:
            with trio.fail_after(15):
                while True:
                    resp = await srv(addr, "be.service.consul")
                    answers = records(resp.answer, dns.rdatatype.SRV)
                    if sorted(int(v.split()[2]) for _, v in answers) == expected:
                        return resp
                    await trio.sleep(0.05)

        await ports_answered([7000, 7001, 7002])
        assert (await api.put("/v1/agent/check/fail/service:be-1")).status == 200
        resp = await ports_answered([7000, 7002])
        assert len(records(resp.additional, dns.rdatatype.A)) == 2
        assert (await api.put("/v1/agent/check/pass/service:be-1")).status == 200
        resp = await ports_answered([7000, 7001, 7002])
        assert len(records(resp.additional, dns.rdatatype.A)) == 3
