"""The sans-I/O answer builder: parse, build, trim. Plain synchronous tests."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from meshd.dns.answers import (
    Found,
    Parsed,
    Rejected,
    build_response,
    lookup_needed,
    parse_request,
)
from meshd.dns.names import NodeQuery, ServiceQuery
from meshd.dns.records import Row
from meshd.dns.settings import DNSSettings, Transport
from tests.meshd.dns._support import row

SETTINGS = DNSSettings()


def parse(name: str, qtype: str = "A", settings: DNSSettings = SETTINGS, **make: Any) -> Parsed:
    wire = dns.message.make_query(name, qtype, **make).to_wire()
    parsed = parse_request(wire, settings)
    assert isinstance(parsed, Parsed)
    return parsed


def answer(
    name: str,
    qtype: str = "A",
    *,
    rows: Sequence[Row] = (),
    node: dict[str, Any] | None = None,
    settings: DNSSettings = SETTINGS,
    transport: Transport = "tcp",
    seed: int = 1,
    variant: int = 0,
    now: float = 1_700_000_000.0,
    **make: Any,
) -> dns.message.Message:
    parsed = parse(name, qtype, settings, **make)
    built = build_response(
        parsed,
        Found(rows=rows, node=node),
        settings,
        transport=transport,
        rng=random.Random(seed),
        now=now,
        variant=variant,
    )
    return dns.message.from_wire(built.wire)


def values(msg: dns.message.Message, section: str = "answer") -> list[str]:
    return [rd.to_text() for rrset in getattr(msg, section) for rd in rrset]


def many(count: int, **kw: Any) -> list[dict[str, Any]]:
    return [row(f"n{i}", f"10.0.{i // 256}.{i % 256}", **kw) for i in range(count)]


def test_critical_instances_are_excluded_and_warning_ones_kept() -> None:
    rows = [row("a", "10.0.0.1"), row("b", "10.0.0.2", status="critical")]
    rows.append(row("c", "10.0.0.3", status="warning"))
    msg = answer("web.service.consul", rows=rows)
    assert sorted(values(msg)) == ["10.0.0.1", "10.0.0.3"]
    strict = answer("web.service.consul", rows=rows, settings=DNSSettings(only_passing=True))
    assert values(strict) == ["10.0.0.1"]


def test_maintenance_is_critical() -> None:
    rows = [row("a", "10.0.0.1"), row("b", "10.0.0.2")]
    rows[1]["Checks"].append({"CheckID": "_node_maintenance", "Status": "critical"})
    assert values(answer("web.service.consul", rows=rows)) == ["10.0.0.1"]


def test_no_healthy_instance_is_nxdomain_with_soa() -> None:
    msg = answer("web.service.consul", rows=[row("a", "10.0.0.1", status="critical")])
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert msg.flags & dns.flags.AA
    (soa,) = msg.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa[0].serial == 1_700_000_000
    assert soa[0].mname.to_text() == "ns.consul." and soa[0].rname.to_text() == "hostmaster.consul."


def test_tags_are_filtered_again_case_insensitively() -> None:
    rows = [row("a", "10.0.0.1", tags=["Primary"]), row("b", "10.0.0.2", tags=["replica"])]
    assert values(answer("primary.web.service.consul", rows=rows)) == ["10.0.0.1"]


def test_udp_without_edns_is_cut_to_the_answer_limit_without_tc_by_default() -> None:
    msg = answer("web.service.consul", rows=many(10), transport="udp")
    assert len(values(msg)) == 3 and not msg.flags & dns.flags.TC
    settings = DNSSettings(udp_answer_limit=5, enable_truncate=True)
    msg = answer("web.service.consul", rows=many(10), transport="udp", settings=settings)
    assert len(values(msg)) == 5 and msg.flags & dns.flags.TC


def test_udp_answer_limit_never_exceeds_eight() -> None:
    settings = DNSSettings(udp_answer_limit=50)
    assert (
        len(values(answer("web.service.consul", rows=many(20), transport="udp", settings=settings)))
        == 8
    )


def test_edns_size_lifts_the_answer_limit_and_bounds_the_size() -> None:
    msg = answer("web.service.consul", rows=many(20), transport="udp", use_edns=0, payload=4096)
    assert len(values(msg)) == 20 and not msg.flags & dns.flags.TC
    settings = DNSSettings(enable_truncate=True)
    parsed = parse("web.service.consul", "SRV", settings, use_edns=0, payload=700)
    built = build_response(
        parsed, Found(rows=many(60)), settings, transport="udp", rng=random.Random(1), now=0
    )
    assert len(built.wire) <= 700 and built.truncated
    msg = dns.message.from_wire(built.wire)
    assert msg.flags & dns.flags.TC
    targets = {rd.target for rd in msg.answer[0]}
    assert {rrset.name for rrset in msg.additional} == targets
    assert 0 < len(targets) < 60
    # the binary search kept the most that fit: one more SRV and its glue would not
    assert len(built.wire) + 2 * 40 > 700


def test_tcp_answers_everything() -> None:
    msg = answer("web.service.consul", "SRV", rows=many(300), transport="tcp")
    assert len(values(msg)) == 300 and len(msg.additional) == 300


def test_a_record_that_cannot_fit_is_an_empty_tc_answer() -> None:
    node = {"Node": "big", "Address": "10.0.0.1", "Meta": {"k": "x" * 600}}
    msg = answer("big.node.consul", "TXT", node=node, transport="udp")
    assert msg.flags & dns.flags.TC and msg.answer == []
    full = answer("big.node.consul", "TXT", node=node, transport="tcp")
    assert len(values(full)) == 1


def test_a_record_limit_caps_address_answers() -> None:
    settings = DNSSettings(a_record_limit=2)
    assert len(values(answer("web.service.consul", rows=many(10), settings=settings))) == 2


def test_duplicate_addresses_are_answered_once() -> None:
    rows = [row("a", "10.0.0.1", port=1), row("a", "10.0.0.1", port=2)]
    assert values(answer("web.service.consul", rows=rows)) == ["10.0.0.1"]
    assert len(values(answer("web.service.consul", "SRV", rows=rows))) == 2


def test_service_address_overrides_node_address_and_families_match_the_type() -> None:
    rows = [row("a", "10.0.0.1", service_address="2001:db8::5"), row("b", "10.0.0.2")]
    assert values(answer("web.service.consul", "AAAA", rows=rows)) == ["2001:db8::5"]
    assert values(answer("web.service.consul", "A", rows=rows)) == ["10.0.0.2"]
    only_v6 = answer("web.service.consul", "A", rows=rows[:1])
    assert only_v6.rcode() == dns.rcode.NOERROR and only_v6.answer == []
    assert only_v6.authority[0].rdtype == dns.rdatatype.SOA


def test_host_name_addresses_give_a_cname_only_without_ip_instances() -> None:
    external = row("ext", "db.example.com")
    msg = answer("web.service.consul", rows=[external])
    assert [(r.rdtype, r[0].to_text()) for r in msg.answer] == [
        (dns.rdatatype.CNAME, "db.example.com.")
    ]
    mixed = answer("web.service.consul", rows=[external, row("a", "10.0.0.1")])
    assert values(mixed) == ["10.0.0.1"]
    srv = answer("web.service.consul", "SRV", rows=[external])
    assert values(srv) == ["1 1 8080 db.example.com."] and srv.additional == []


def test_variants_rotate_one_shuffle() -> None:
    rows = many(8)
    orders = [values(answer("web.service.consul", rows=rows, seed=7, variant=v)) for v in range(8)]
    assert len({o[0] for o in orders}) == 8  # every instance leads one variant
    assert orders[1] == orders[0][1:] + orders[0][:1]
    assert values(answer("web.service.consul", rows=rows, seed=7, variant=3)) == orders[3]
    parsed = parse("web.service.consul")
    built = build_response(
        parsed, Found(rows=rows), SETTINGS, transport="udp", rng=random.Random(1), now=0
    )
    assert built.variants == 8


def test_node_answers() -> None:
    node = {"Node": {"Node": "n1", "Address": "10.0.0.9", "Meta": {"a=b": " v`"}}}
    assert values(answer("n1.node.consul", node=node)) == ["10.0.0.9"]
    txt = answer("n1.node.consul", "TXT", node=node)
    assert values(txt) == ['"a`=b= v``"']
    any_ = answer("n1.node.consul", "ANY", node=node)
    assert sorted(values(any_)) == ['"a`=b= v``"', "10.0.0.9"]
    mx = answer("n1.node.consul", "MX", node=node)
    assert mx.rcode() == dns.rcode.NOERROR and mx.answer == []
    missing = answer("n1.node.consul", node=None)
    assert missing.rcode() == dns.rcode.NXDOMAIN


def test_addr_answers_and_puts_other_types_in_additional() -> None:
    msg = answer("0a000001.addr.dc1.consul")
    assert values(msg) == ["10.0.0.1"]
    other = answer("0a000001.addr.dc1.consul", "AAAA")
    assert other.answer == [] and values(other, "additional") == ["10.0.0.1"]


def test_outside_the_domain_without_recursors_is_refused() -> None:
    msg = answer("example.com")
    assert msg.rcode() == dns.rcode.REFUSED and not msg.flags & dns.flags.AA


def test_lookup_needed() -> None:
    assert lookup_needed(parse("v1.web.service.consul")) == ServiceQuery("web", "v1", False)
    assert lookup_needed(parse("n.node.consul")) == NodeQuery("n")
    assert lookup_needed(parse("consul", "NS")) == ServiceQuery("consul", None, False)
    assert lookup_needed(parse("consul", "A")) is None
    assert lookup_needed(parse("nothing.consul")) is None


def _wire(msg: dns.message.Message) -> bytes:
    return msg.to_wire()


def test_parse_request_rejections() -> None:
    assert parse_request(b"\x00" * 11, SETTINGS) == Rejected(None)
    response = dns.message.make_response(dns.message.make_query("a.consul", "A"))
    assert parse_request(_wire(response), SETTINGS) == Rejected(None)

    def rcode_of(query: dns.message.Message | bytes) -> dns.rcode.Rcode:
        wire = query if isinstance(query, bytes) else _wire(query)
        rejected = parse_request(wire, SETTINGS)
        assert isinstance(rejected, Rejected) and rejected.wire is not None
        return dns.message.from_wire(rejected.wire).rcode()

    assert rcode_of(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6 + b"\x05ab") == dns.rcode.FORMERR
    notify = dns.message.make_query("consul", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert rcode_of(notify) == dns.rcode.NOTIMP
    assert rcode_of(dns.message.make_query("consul", "SOA", use_edns=1)) == dns.rcode.BADVERS
    chaos = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    assert rcode_of(chaos) == dns.rcode.REFUSED
    assert rcode_of(dns.message.make_query("consul", "AXFR")) == dns.rcode.NOTIMP
    empty = dns.message.make_query("consul", "A")
    empty.question = []
    assert rcode_of(empty) == dns.rcode.FORMERR


def test_ttl_lookup_prefers_exact_then_longest_prefix() -> None:
    settings = DNSSettings(service_ttl={"*": 5, "we*": 6, "web*": 7, "web": 8, "Api": 9.9})
    assert settings.service_ttl_seconds("web") == 8
    assert settings.service_ttl_seconds("webapp") == 7
    assert settings.service_ttl_seconds("wedge") == 6
    assert settings.service_ttl_seconds("db") == 5
    assert settings.service_ttl_seconds("api") == 9
    assert DNSSettings().service_ttl_seconds("web") == 0


def test_edns_reply_carries_opt_and_a_plain_reply_does_not() -> None:
    with_edns = answer("web.service.consul", rows=many(2), use_edns=0)
    assert with_edns.edns == 0
    assert answer("web.service.consul", rows=many(2)).edns == -1


def test_rrset_order_is_ours() -> None:
    msg = answer("web.service.consul", rows=many(5), seed=3)
    again = answer("web.service.consul", rows=many(5), seed=3)
    assert values(msg) == values(again)
    assert isinstance(msg.answer[0], dns.rrset.RRset)


def _wire_records(built_wire: bytes, section: str) -> list[tuple[str, str]]:
    # one_rr_per_rrset: every record as sent, duplicates included
    msg = dns.message.from_wire(built_wire, one_rr_per_rrset=True)
    return [(str(s.name), rd.to_text()) for s in getattr(msg, section) for rd in s]


def _built(name: str, rows: Sequence[Row], transport: Transport = "tcp") -> bytes:
    parsed = parse(name, "SRV")
    built = build_response(
        parsed, Found(rows=rows), SETTINGS, transport=transport, rng=random.Random(1), now=0
    )
    return built.wire


def test_every_srv_answer_gets_its_own_additional_record() -> None:
    """Consul appends one extra per SRV answer: three instances on one node
    give three address records, which resolvers such as HAProxy's pair with
    the SRV records one to one."""
    rows = [row("n1", "10.0.0.1", port=p) for p in (8080, 8081, 8082)]
    rows[0]["Service"]["ID"], rows[1]["Service"]["ID"] = "a", "b"
    wire = _built("web.service.consul", rows)
    assert len(_wire_records(wire, "answer")) == 3
    assert _wire_records(wire, "additional") == [("n1.node.dc1.consul.", "10.0.0.1")] * 3


def test_an_instance_ip_gives_a_hex_addr_target_even_when_it_is_the_nodes() -> None:
    rows = [row("n1", "127.0.0.1", service_address="127.0.0.1")]
    wire = _built("web.service.consul", rows)
    [(_, srv)] = _wire_records(wire, "answer")
    assert srv.endswith(" 7f000001.addr.dc1.consul.")
    assert _wire_records(wire, "additional") == [("7f000001.addr.dc1.consul.", "127.0.0.1")]


def test_a_udp_answer_cut_to_three_keeps_one_additional_per_kept_answer() -> None:
    rows = [row("n1", "10.0.0.1", port=8000 + i) for i in range(6)]
    for i, r in enumerate(rows):
        r["Service"]["ID"] = f"web-{i}"
    wire = _built("web.service.consul", rows, transport="udp")
    assert len(_wire_records(wire, "answer")) == 3
    assert len(_wire_records(wire, "additional")) == 3
