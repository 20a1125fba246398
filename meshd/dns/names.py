"""Which question a DNS name asks: the name grammar of Consul's DNS interface.

Pure and synchronous. The grammar follows Consul's ``agent/dns.go``
``dispatch`` (https://developer.hashicorp.com/consul/docs/services/discovery/dns-static-lookups):

- labels are compared in lower case, the domain suffix is removed, and the
  labels are scanned from the right for the first kind label (``service``,
  ``connect``, ``node``, ``addr``, ``query``, ``virtual``, ``ingress``);
  labels left of it are the query parts, labels right of it the locality;
- an SRV question needs no ``service`` label: the rightmost label starting
  with ``_`` ends the query parts (``_web._tcp.consul``);
- ``service``: RFC 2782 ``_<service>._<tag>`` when there are exactly two
  parts that both start with ``_`` (the tag ``_tcp`` means no tag);
  otherwise ``[tag.]<service>`` where the tag may itself contain dots;
- ``connect``: the last part is the service; ``node``: all parts joined by
  dots are the node name; ``addr``: one part, 8 hex digits (IPv4) or 32
  (IPv6);
- locality: nothing (this datacenter), ``<dc>``, or ``<dc>.dc``; anything
  else is an invalid name. A datacenter other than ours is an unknown path
  (meshd has no WAN federation), which Consul answers NXDOMAIN
  (``structs.ErrNoDCPath``);
- prepared queries, virtual IPs and ingress names are not served: NXDOMAIN,
  as Consul answers an unknown prepared query.

SOA and NS questions for the domain itself are answered from the domain's
SOA and its servers; for deeper names they are classified like any other
type and end as NODATA or NXDOMAIN (Consul answers them with the apex
records whatever the name, which resolvers reject as out of zone).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.name
import dns.rdatatype

from .settings import DNSSettings

__all__ = [
    "AddrQuery",
    "ApexQuery",
    "InvalidName",
    "NameQuery",
    "NodeQuery",
    "OutsideDomain",
    "ServiceQuery",
    "classify",
]

_KINDS = frozenset({"service", "connect", "node", "addr", "query", "virtual", "ingress"})
_UNSERVED = frozenset({"query", "virtual", "ingress"})


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    """``[tag.]<service>.service``, ``_<service>._<tag>.service`` or ``<service>.connect``."""

    service: str
    tag: str | None
    connect: bool


@dataclass(frozen=True, slots=True)
class NodeQuery:
    """``<node>.node``."""

    node: str


@dataclass(frozen=True, slots=True)
class AddrQuery:
    """``<hex>.addr``: the address encoded in the name itself."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class ApexQuery:
    """A question for the domain itself (SOA, NS, or another type: NODATA)."""


@dataclass(frozen=True, slots=True)
class InvalidName:
    """A name in the domain that names nothing meshd serves: NXDOMAIN with the SOA."""

    reason: str


@dataclass(frozen=True, slots=True)
class OutsideDomain:
    """A name outside the domain: forwarded to the recursors, or REFUSED without any."""


NameQuery = ServiceQuery | NodeQuery | AddrQuery | ApexQuery | InvalidName | OutsideDomain


def classify(qname: dns.name.Name, qtype: int, settings: DNSSettings) -> NameQuery:
    """What ``qname`` asks for, given the domain and datacenter in ``settings``."""
    origin = settings.origin
    if not qname.is_subdomain(origin):
        return OutsideDomain()
    labels = [label.decode("latin-1").lower() for label in qname.relativize(origin).labels]
    if not labels:
        return ApexQuery()
    kind, parts, suffixes = _split(labels, qtype)
    if kind is None:
        return InvalidName("no query kind label")
    if not parts:
        return InvalidName(f"nothing before .{kind}")
    datacenter = _locality(suffixes)
    if datacenter is None:
        return InvalidName("invalid locality")
    if datacenter and datacenter != settings.datacenter.lower():
        return InvalidName(f"no path to datacenter {datacenter}")
    return _by_kind(kind, parts)


def _split(labels: list[str], qtype: int) -> tuple[str | None, list[str], list[str]]:
    for i in range(len(labels) - 1, -1, -1):
        label = labels[i]
        if label in _KINDS:
            return label, labels[:i], labels[i + 1 :]
        if qtype == dns.rdatatype.SRV and label.startswith("_"):
            return "service", labels[: i + 1], labels[i + 1 :]
    return None, [], []


def _locality(suffixes: list[str]) -> str | None:
    """The datacenter named by the labels after the kind ("" for ours), None if invalid."""
    if not suffixes:
        return ""
    if len(suffixes) == 1:
        return suffixes[0]
    if len(suffixes) == 2 and suffixes[1] == "dc":
        return suffixes[0]
    return None


def _by_kind(kind: str, parts: list[str]) -> NameQuery:
    if kind in _UNSERVED:
        return InvalidName(f".{kind} lookups are not served")
    if kind == "service":
        return _service(parts)
    if kind == "connect":
        return ServiceQuery(parts[-1], None, connect=True)
    if kind == "node":
        return NodeQuery(".".join(parts))
    return _addr(parts)


def _service(parts: list[str]) -> ServiceQuery:
    if len(parts) == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
        tag = parts[1][1:]
        # _name._tcp.service.consul is the plain service: Consul ignores that tag.
        return ServiceQuery(parts[0][1:], None if tag in ("tcp", "") else tag, connect=False)
    tag = ".".join(parts[:-1])
    return ServiceQuery(parts[-1], tag or None, connect=False)


def _addr(parts: list[str]) -> NameQuery:
    if len(parts) != 1 or len(parts[0]) not in (8, 32):
        return InvalidName("addr label is not 8 or 32 hex digits")
    try:
        packed = bytes.fromhex(parts[0])
    except ValueError:
        return InvalidName("addr label is not hex")
    address = ipaddress.ip_address(packed)
    return AddrQuery(address)
