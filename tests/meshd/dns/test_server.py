"""The DNS server over real sockets on 127.0.0.1, asked by real resolvers (e2e).

``dig`` (Debian's dnsutils, installed if missing) and dnspython's query
functions are the clients; the catalog is a ``StaticLookup`` over
Consul-shaped rows, the boundary the agent implements.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
import trio

from meshd.dns import DNSSettings, StaticLookup, serve_responder
from meshd.dns.records import Row
from tests.meshd.dns._support import dig, row, running, static

pytestmark = pytest.mark.e2e

IN = dns.rdataclass.IN
A, SRV = dns.rdatatype.A, dns.rdatatype.SRV

WEB = [
    row("node-a", "10.0.0.1", tags=["v1", "primary"]),
    row("node-b", "10.0.0.2", tags=["v1"]),
    row("node-c", "10.0.0.3", tags=["v2"], status="warning"),
    row("node-d", "10.0.0.4", tags=["v2"], status="critical"),
]


async def test_a_answers_healthy_instances_and_includes_warning() -> None:
    async with running(static(WEB)) as port:
        got = await dig(port, "web.service.consul", "A", "+tcp")
    assert got.status == "NOERROR"
    assert "aa" in got.flags
    assert sorted(got.values("A")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


async def test_only_passing_excludes_warning_instances() -> None:
    async with running(static(WEB), DNSSettings(only_passing=True)) as port:
        got = await dig(port, "web.service.consul", "A", "+tcp")
    assert sorted(got.values("A")) == ["10.0.0.1", "10.0.0.2"]


async def test_tag_filter_in_both_syntaxes() -> None:
    async with running(static(WEB)) as port:
        legacy = await dig(port, "v1.web.service.consul", "A")
        rfc2782 = await dig(port, "_web._v2.service.consul", "SRV")
        tcp_means_all = await dig(port, "_web._tcp.service.consul", "SRV")
        no_match = await dig(port, "v9.web.service.consul", "A")
    assert sorted(legacy.values("A")) == ["10.0.0.1", "10.0.0.2"]
    assert rfc2782.values("SRV") == ["1 1 8080 node-c.node.dc1.consul."]
    assert len(tcp_means_all.values("SRV")) == 3
    assert no_match.status == "NXDOMAIN"


async def test_srv_targets_node_names_with_additional_addresses() -> None:
    rows = [
        row("node-a", "10.0.0.1", port=8001, weights={"Passing": 10, "Warning": 1}),
        row("node-b", "10.0.0.2", port=8002, service_address="192.168.0.9"),
        row(
            "node-c", "10.0.0.3", port=8003, status="warning", weights={"Passing": 10, "Warning": 2}
        ),
    ]
    async with running(static(rows)) as port:
        got = await dig(port, "web.service.consul", "SRV", "+tcp")
    assert set(got.values("SRV")) == {
        "1 10 8001 node-a.node.dc1.consul.",
        "1 1 8002 c0a80009.addr.dc1.consul.",
        "1 2 8003 node-c.node.dc1.consul.",
    }
    glue = {r[0]: r[4] for r in got.additional if r[3] == "A"}
    assert glue == {
        "node-a.node.dc1.consul.": "10.0.0.1",
        "c0a80009.addr.dc1.consul.": "192.168.0.9",
        "node-c.node.dc1.consul.": "10.0.0.3",
    }


async def test_node_lookup_address_meta_and_unknown() -> None:
    rows = [row("node-a", "10.0.0.1", meta={"rack": "r7"})]
    async with running(static(rows)) as port:
        a = await dig(port, "node-a.node.consul", "A")
        txt = await dig(port, "node-a.node.dc1.consul", "TXT")
        aaaa = await dig(port, "node-a.node.consul", "AAAA")
        unknown = await dig(port, "node-z.node.consul", "A")
    assert a.values("A") == ["10.0.0.1"]
    assert txt.values("TXT") == ['"rack=r7"']
    assert aaaa.status == "NOERROR" and aaaa.answer == []
    assert aaaa.authority[0][3] == "SOA"
    assert unknown.status == "NXDOMAIN"


async def test_connect_lookup_answers_mesh_capable_endpoints() -> None:
    rows = [
        *WEB,
        row(
            "node-a",
            "10.0.0.1",
            service="web-sidecar-proxy",
            port=21000,
            kind="connect-proxy",
            destination="web",
        ),
    ]
    async with running(static(rows)) as port:
        srv = await dig(port, "web.connect.consul", "SRV")
        plain = await dig(port, "web-sidecar-proxy.service.consul", "SRV")
    assert srv.values("SRV") == ["1 1 21000 node-a.node.dc1.consul."]
    assert len(plain.values("SRV")) == 1


async def test_unknown_names_are_nxdomain_with_the_soa() -> None:
    async with running(static(WEB)) as port:
        missing = await dig(port, "nope.service.consul", "A")
        no_kind = await dig(port, "what.ever.consul", "A")
        prepared = await dig(port, "q1.query.consul", "A")
    for got in (missing, no_kind, prepared):
        assert got.status == "NXDOMAIN"
        (soa,) = got.authority
        assert soa[0] == "consul." and soa[3] == "SOA"
        assert soa[4:6] == ["ns.consul.", "hostmaster.consul."]
        assert soa[7:] == ["3600", "600", "86400", "0"]


async def test_ttls_per_service_with_wildcard_and_node_ttl() -> None:
    rows = [
        *WEB,
        row("node-e", "10.0.0.5", service="db-main"),
        row("node-f", "10.0.0.6", service="x"),
    ]
    settings = DNSSettings(service_ttl={"web": 30.0, "db*": 7.0, "*": 5.0}, node_ttl=60.0)
    async with running(static(rows), settings) as port:
        web = await dig(port, "web.service.consul", "A")
        db = await dig(port, "db-main.service.consul", "SRV")
        other = await dig(port, "x.service.consul", "A")
        node = await dig(port, "node-a.node.consul", "A")
    assert {r[1] for r in web.answer} == {"30"}
    assert {r[1] for r in db.answer} == {"7"}
    assert {r[1] for r in db.additional if r[3] == "A"} == {"7"}
    assert {r[1] for r in other.answer} == {"5"}
    assert node.answer[0][1] == "60"


def _many(count: int) -> list[dict[str, Any]]:
    return [row(f"node-{i}", f"10.1.{i // 256}.{i % 256}") for i in range(count)]


async def test_udp_truncation_sets_tc_and_tcp_gives_everything() -> None:
    async with running(static(_many(10)), DNSSettings(enable_truncate=True)) as port:
        udp = await dig(port, "web.service.consul", "A", "+noedns", "+ignore")
        tcp = await dig(port, "web.service.consul", "A", "+tcp")
        big_edns = await dig(port, "web.service.consul", "A", "+bufsize=4096", "+ignore")
    assert "tc" in udp.flags
    assert len(udp.values("A")) == 3
    assert "tc" not in tcp.flags
    assert len(tcp.values("A")) == 10
    assert "tc" not in big_edns.flags and len(big_edns.values("A")) == 10


async def test_udp_limit_without_enable_truncate_cuts_quietly() -> None:
    async with running(static(_many(10))) as port:
        udp = await dig(port, "web.service.consul", "A", "+noedns", "+ignore")
        followed = await dig(port, "web.service.consul", "A", "+noedns")
    assert len(udp.values("A")) == 3 and "tc" not in udp.flags
    assert len(followed.values("A")) == 3


async def test_oversized_udp_answer_fits_the_edns_size_and_retries_over_tcp() -> None:
    async with running(static(_many(100)), DNSSettings(enable_truncate=True)) as port:
        q = dns.message.make_query("web.service.consul", "SRV", use_edns=0, payload=1232)
        udp = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
        tcp = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=3)
        wire = await _udp_raw(port, q.to_wire())
    assert udp.flags & dns.flags.TC
    srv = udp.find_rrset(udp.answer, q.question[0].name, IN, SRV)
    assert 10 < len(srv) < 100 and len(wire) <= 1232
    targets = {r.target for r in srv}
    assert {rrset.name for rrset in udp.additional} == targets  # glue only for what is kept
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.find_rrset(tcp.answer, q.question[0].name, IN, SRV)) == 100


async def test_names_are_case_insensitive_and_echo_the_question() -> None:
    async with running(static(WEB)) as port:
        got = await dig(port, "WeB.SeRvIcE.CoNsUl", "A", "+tcp")
        node = await dig(port, "NODE-A.Node.CONSUL", "A")
    assert sorted(got.values("A")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert {r[0] for r in got.answer} == {"WeB.SeRvIcE.CoNsUl."}
    assert node.values("A") == ["10.0.0.1"]


async def test_datacenter_in_the_name() -> None:
    async with running(static(WEB)) as port:
        ours = await dig(port, "web.service.dc1.consul", "A")
        explicit = await dig(port, "web.service.dc1.dc.consul", "A")
        other = await dig(port, "web.service.dc2.consul", "A")
        node_other = await dig(port, "node-a.node.dc2.consul", "A")
    assert len(ours.values("A")) == 3 and len(explicit.values("A")) == 3
    assert other.status == "NXDOMAIN" and other.authority[0][3] == "SOA"
    assert node_other.status == "NXDOMAIN"


async def test_custom_domain() -> None:
    async with running(static(WEB), DNSSettings(domain="mesh.internal")) as port:
        ours = await dig(port, "web.service.mesh.internal", "SRV")
        consul = await dig(port, "web.service.consul", "A")
    assert sorted(ours.values("SRV"))[0] == "1 1 8080 node-a.node.dc1.mesh.internal."
    assert consul.status == "REFUSED"


async def test_apex_soa_and_ns_name_the_servers() -> None:
    rows = [*WEB, row("server-1", "10.9.0.1", service="consul", port=8300)]
    async with running(static(rows)) as port:
        soa = await dig(port, "consul", "SOA")
        ns = await dig(port, "consul", "NS")
        apex_a = await dig(port, "consul", "A")
    assert soa.values("SOA")[0].startswith("ns.consul. hostmaster.consul.")
    assert soa.values("NS", "authority") == ["server-1.node.dc1.consul."]
    assert ns.values("NS") == ["server-1.node.dc1.consul."]
    assert ns.values("A", "additional") == ["10.9.0.1"]
    assert apex_a.status == "NOERROR" and apex_a.answer == []


async def test_catalog_changes_are_seen_at_once_despite_the_cache() -> None:
    lookup = static(WEB)
    async with running(lookup) as port:
        before = await dig(port, "web.service.consul", "A", "+tcp")
        lookup.replace([row("node-z", "10.0.9.9")])
        after = await dig(port, "web.service.consul", "A", "+tcp")
        gone = await dig(port, "node-a.node.consul", "A")
    assert len(before.values("A")) == 3
    assert after.values("A") == ["10.0.9.9"]
    assert gone.status == "NXDOMAIN"


async def test_repeated_queries_spread_over_all_instances() -> None:
    lookup = static(_many(20))
    async with running(lookup) as port:
        q = dns.message.make_query("web.service.consul", "A")
        firsts: Counter[str] = Counter()
        for _ in range(300):
            reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
            firsts[str(next(iter(reply.answer[0])))] += 1
    assert len(firsts) == 20  # every instance comes first in some answer
    assert lookup.calls == 1  # ... all from one lookup


async def test_lookup_failure_is_servfail_and_the_server_lives_on() -> None:
    class Broken(StaticLookup):
        async def health_service(
            self, name: str, tag: str | None, connect: bool, passing_only: bool
        ) -> Sequence[Row]:
            if name == "boom":
                raise RuntimeError("catalog down")
            return await super().health_service(name, tag, connect, passing_only)

    async with running(Broken(WEB)) as port:
        boom = await dig(port, "boom.service.consul", "A")
        fine = await dig(port, "web.service.consul", "A", "+tcp")
    assert boom.status == "SERVFAIL"
    assert len(fine.values("A")) == 3


async def _udp_raw(port: int, payload: bytes, *, expect_reply: bool = True) -> bytes:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.connect(("127.0.0.1", port))
        await sock.send(payload)
        if not expect_reply:
            with trio.move_on_after(0.3):
                return await sock.recv(65535)
            return b""
        with trio.fail_after(3):
            return await sock.recv(65535)


async def test_malformed_packets_get_formerr_or_nothing_and_do_not_kill_the_server() -> None:
    async with running(static(WEB)) as port:
        assert await _udp_raw(port, b"\x01\x02\x03", expect_reply=False) == b""
        bad = await _udp_raw(port, b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07web")
        response_bit = await _udp_raw(port, b"\x00\x01\x81\x80" + bytes(8), expect_reply=False)
        two_questions = dns.message.make_query("web.service.consul", "A")
        two_questions.question.append(two_questions.question[0])
        formerr = await _udp_raw(port, two_questions.to_wire())
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"\x00\x05hello")
            tcp_reply = await stream.receive_some(100)
        got = await dig(port, "web.service.consul", "A", "+tcp")
    assert bad[:2] == b"\xab\xcd"
    assert dns.message.from_wire(bad).rcode() == dns.rcode.FORMERR
    assert response_bit == b""
    assert dns.message.from_wire(formerr).rcode() == dns.rcode.FORMERR
    assert tcp_reply == b""  # five bytes are no query: the connection is closed
    assert len(got.values("A")) == 3


async def test_axfr_is_not_implemented() -> None:
    async with running(static(WEB)) as port:
        q = dns.message.make_query("consul", "AXFR")
        reply = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=3)
    assert reply.rcode() == dns.rcode.NOTIMP


def _upstream_rows() -> list[Mapping[str, Any]]:
    return [row("ext-1", "172.16.5.5", service="www")]


async def _dead_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_other_names_are_forwarded_to_the_recursors() -> None:
    upstream_settings = DNSSettings(domain="example.test", enable_truncate=True)
    async with running(static(_upstream_rows()), upstream_settings) as upstream:
        dead = await _dead_udp_port()
        recursors: list[str | tuple[str, int]] = [f"127.0.0.1:{dead}", ("127.0.0.1", upstream)]
        async with running(static(WEB), recursors=recursors) as port:
            forwarded = await dig(port, "www.service.example.test", "A")
            missing = await dig(port, "nope.service.example.test", "A", "+tcp")
            local = await dig(port, "web.service.consul", "A")
    assert forwarded.status == "NOERROR"
    assert forwarded.values("A") == ["172.16.5.5"]
    assert "aa" in forwarded.flags  # relayed as the upstream sent it
    assert missing.status == "NXDOMAIN"
    assert local.status == "NOERROR" and "ra" in local.flags


class TruncatingUpstream:
    """A recursor that truncates every UDP answer (TC, no records) and answers TCP in full."""

    def __init__(self, count: int) -> None:
        self.count = count

    def cached_reply(self, wire: bytes, transport: str) -> bytes | None:
        return None

    async def reply(self, wire: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        reply = dns.message.make_response(query)
        if transport == "udp":
            reply.flags |= dns.flags.TC
            return reply.to_wire()
        rrset = reply.find_rrset(reply.answer, query.question[0].name, IN, A, create=True)
        for i in range(self.count):
            rrset.add(dns.rdata.from_text("IN", "A", f"172.16.0.{i}"), 60)
        return reply.to_wire()


async def test_recursor_tc_reply_is_completed_over_tcp_when_the_client_has_room() -> None:
    async with trio.open_nursery() as nursery:
        (host, upstream), _ = await nursery.start(
            serve_responder, ("127.0.0.1", 0), TruncatingUpstream(40)
        )
        async with running(static(WEB), recursors=[(host, upstream)]) as port:
            q = dns.message.make_query("www.example.test", "A")
            small = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
            q.use_edns(0, payload=4096)
            roomy = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
            tcp = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=3)
        nursery.cancel_scope.cancel()
    # 40 records do not fit 512 bytes: the client gets the TC reply and asks over TCP.
    assert small.flags & dns.flags.TC and small.answer == []
    assert not roomy.flags & dns.flags.TC and len(roomy.answer[0]) == 40
    assert len(tcp.answer[0]) == 40


async def test_recursors_all_failing_is_servfail_and_none_is_refused() -> None:
    dead = await _dead_udp_port()
    async with running(static(WEB), recursors=[("127.0.0.1", dead)]) as port:
        failed = await dig(port, "example.org", "A")
    async with running(static(WEB)) as port:
        refused = await dig(port, "example.org", "A")
    assert failed.status == "SERVFAIL"
    assert refused.status == "REFUSED"
