"""The name grammar: which question a DNS name asks."""

from __future__ import annotations

import ipaddress

import dns.name
import dns.rdatatype
import pytest

from meshd.dns.names import (
    AddrQuery,
    ApexQuery,
    InvalidName,
    NameQuery,
    NodeQuery,
    OutsideDomain,
    ServiceQuery,
    classify,
)
from meshd.dns.settings import DNSSettings

SETTINGS = DNSSettings()


def ask(name: str, qtype: str = "A", settings: DNSSettings = SETTINGS) -> NameQuery:
    return classify(dns.name.from_text(name), dns.rdatatype.from_text(qtype), settings)


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        ("web.service.consul", "A", ServiceQuery("web", None, connect=False)),
        ("WEB.Service.CONSUL", "A", ServiceQuery("web", None, connect=False)),
        ("v1.web.service.consul", "A", ServiceQuery("web", "v1", connect=False)),
        ("a.b.web.service.consul", "A", ServiceQuery("web", "a.b", connect=False)),
        ("_web._v1.service.consul", "SRV", ServiceQuery("web", "v1", connect=False)),
        ("_web._tcp.service.consul", "SRV", ServiceQuery("web", None, connect=False)),
        ("_web._tcp.consul", "SRV", ServiceQuery("web", None, connect=False)),
        ("_web._tcp.dc1.consul", "SRV", ServiceQuery("web", None, connect=False)),
        ("web.service.dc1.consul", "A", ServiceQuery("web", None, connect=False)),
        ("web.service.dc1.dc.consul", "A", ServiceQuery("web", None, connect=False)),
        ("web.connect.consul", "SRV", ServiceQuery("web", None, connect=True)),
        ("node-1.node.consul", "A", NodeQuery("node-1")),
        ("my.host.node.dc1.consul", "A", NodeQuery("my.host")),
        ("0a000001.addr.dc1.consul", "A", AddrQuery(ipaddress.ip_address("10.0.0.1"))),
        ("consul", "SOA", ApexQuery()),
        ("Consul.", "NS", ApexQuery()),
        ("example.com", "A", OutsideDomain()),
        ("consul.example.com", "A", OutsideDomain()),
    ],
)
def test_names_classify_as_consul_does(name: str, qtype: str, expected: NameQuery) -> None:
    assert ask(name, qtype) == expected


@pytest.mark.parametrize(
    "name",
    [
        "service.consul",  # nothing before the kind
        "web.consul",  # no kind label
        "web.service.dc2.consul",  # another datacenter: no path to it
        "web.service.dc1.extra.more.consul",  # locality of three labels
        "web.service.dc1.xx.consul",  # two labels that are not <dc>.dc
        "q.query.consul",  # prepared queries are not served
        "web.virtual.consul",
        "web.ingress.consul",
        "zz.addr.consul",  # not 8 or 32 hex digits
        "zzzzzzzz.addr.consul",  # not hex
    ],
)
def test_names_that_name_nothing_are_invalid(name: str) -> None:
    assert isinstance(ask(name), InvalidName)


def test_srv_underscore_rule_applies_to_srv_questions_only() -> None:
    assert isinstance(ask("_web._tcp.consul", "A"), InvalidName)


def test_the_rightmost_kind_label_wins() -> None:
    assert ask("node.web.service.consul") == ServiceQuery("web", "node", connect=False)


def test_a_custom_domain_and_datacenter() -> None:
    settings = DNSSettings(domain="Mesh.Internal.", datacenter="east")
    assert ask("web.service.east.mesh.internal", settings=settings) == ServiceQuery(
        "web", None, connect=False
    )
    assert isinstance(ask("web.service.dc1.mesh.internal", settings=settings), InvalidName)
    assert isinstance(ask("web.service.consul", settings=settings), OutsideDomain)


def test_ipv6_addr_label() -> None:
    hexed = ipaddress.ip_address("2001:db8::1").packed.hex()
    assert ask(f"{hexed}.addr.consul", "AAAA") == AddrQuery(ipaddress.ip_address("2001:db8::1"))
