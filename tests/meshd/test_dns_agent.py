"""DNS served by a real dev agent, queried with dnspython's resolver client."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.meshd.harness import dev_agent

pytestmark = pytest.mark.e2e


async def query(
    addr: tuple[str, int], name: str, rdtype: str, tcp: bool = False
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    fn = dns.query.tcp if tcp else dns.query.udp
    return await trio.to_thread.run_sync(lambda: fn(q, addr[0], port=addr[1], timeout=3))


async def test_healthy_instances_by_a_and_srv_and_nxdomain() -> None:
    async with dev_agent() as (agent, api):
        for i, status in enumerate(["passing", "critical", "warning"]):
            body = {
                "Node": f"n{i}",
                "Address": f"10.0.0.{i + 1}",
                "Service": {"Service": "api", "ID": f"api-{i}", "Port": 9000 + i, "Tags": ["v1"]},
                "Check": {
                    "CheckID": f"c{i}",
                    "Name": "c",
                    "Status": status,
                    "ServiceID": f"api-{i}",
                },
            }
            assert (await api.put("/v1/catalog/register", body)).status == 200
        addr = agent.dns_addresses[0]
        resp = await query(addr, "api.service.consul", "A")
        got = sorted(r.address for rr in resp.answer for r in rr)
        assert got == ["10.0.0.1", "10.0.0.3"], resp  # critical excluded, warning kept
        resp = await query(addr, "v1.api.service.dc1.consul", "SRV")
        ports = sorted(r.port for rr in resp.answer for r in rr)
        assert ports == [9000, 9002]
        assert any(rr.rdtype == dns.rdatatype.A for rr in resp.additional)
        resp = await query(addr, "_api._v1.service.consul", "SRV", tcp=True)
        assert sorted(r.port for rr in resp.answer for r in rr) == [9000, 9002]
        resp = await query(addr, "n0.node.consul", "A")
        assert [r.address for rr in resp.answer for r in rr] == ["10.0.0.1"]
        resp = await query(addr, "nope.service.consul", "A")
        assert resp.rcode() == dns.rcode.NXDOMAIN
        assert any(rr.rdtype == dns.rdatatype.SOA for rr in resp.authority)

        # A check going critical drops the instance from DNS.
        body = {
            "Node": "n0",
            "Address": "10.0.0.1",
            "Check": {"CheckID": "c0", "Name": "c", "Status": "critical", "ServiceID": "api-0"},
        }
        assert (await api.put("/v1/catalog/register", body)).status == 200
        resp = await query(addr, "api.service.consul", "A")
        assert sorted(r.address for rr in resp.answer for r in rr) == ["10.0.0.3"]


async def test_dns_queries_and_check_runs_show_in_prometheus_metrics() -> None:
    async with dev_agent() as (agent, api):
        check = {"Name": "ttl-check", "CheckID": "t1", "TTL": "30s"}
        assert (await api.put("/v1/agent/check/register", check)).status == 200
        assert (await api.put("/v1/agent/check/pass/t1")).status == 200
        await query(agent.dns_addresses[0], "nope.service.consul", "A")
        text = (await api.get("/v1/agent/metrics?format=prometheus")).text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
        dns = [
            v
            for (n, lbl), v in samples.items()
            if n == "meshd_dns_queries_total" and ("rcode", "NXDOMAIN") in lbl
        ]
        assert dns and dns[0] >= 1, sorted(n for n, _ in samples)[:40]
        runs = [
            v
            for (n, lbl), v in samples.items()
            if n == "meshd_checks_runs_total" and ("kind", "ttl") in lbl
        ]
        assert runs and runs[0] >= 1
