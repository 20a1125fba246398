"""DNS answers: parse a query, say which lookup it needs, build the reply. Sans-I/O.

Three synchronous steps, with the (asynchronous) catalog lookup between the
second and the third, done by the caller:

1. ``parse_request(wire, settings)`` -> ``Parsed`` or ``Rejected`` (a ready
   FORMERR/NOTIMP/REFUSED/BADVERS reply, or None to drop the packet);
2. ``lookup_needed(parsed)`` -> the ``ServiceQuery``/``NodeQuery`` to run
   against the catalog, or None;
3. ``build_response(parsed, found, settings, transport=..., rng=..., now=...)``
   -> ``Built`` (the wire bytes and how many orderings of the answer exist);
   ``prepare_found`` filters a lookup result once when several orderings
   are built from it.

Rules (Consul's ``agent/dns.go`` unless said otherwise):

- Every reply in the domain is authoritative (AA); RA is set when recursors
  are configured. NXDOMAIN and NODATA carry the domain's SOA in the
  authority section (RFC 2308 negative caching).
- Service lookups return healthy instances only (``records.healthy_rows``),
  shuffled by ``rng``; A/AAAA/ANY give address records (a host name address
  gives one CNAME, used only when no instance has an IP), SRV gives one SRV
  per distinct (node, address, port) and, as Consul does, one address
  record in the additional section per SRV answer (several instances on one
  node give as many additional records: resolvers such as HAProxy's pair
  them one to one). The target is the node's name when the instance has no
  address of its own, ``<hex ip>.addr.<dc>.<domain>`` when its address is
  an IP. ``a_record_limit`` (0: none) caps the instances in an address
  answer.
- UDP: without EDNS0 (or with a size of at most 512) the answer is first cut
  to ``min(udp_answer_limit, 8)`` records; then answers are dropped until
  the message fits 512 bytes or the EDNS0 size. TC is set when records were
  dropped only if ``enable_truncate`` (Consul's rule: by default a client
  gets three records and no TC). If not even one record fits, the answer is
  sent empty with TC whatever the setting, so the client asks over TCP.
- TCP: the whole answer, cut only at the 65535-byte message limit.
- ``variant``: a service answer built with the same ``rng`` state and a
  different ``variant`` starts at another instance (a rotation of the same
  shuffle), so a cache of a few encoded variants still spreads clients over
  every instance; ``Built.variants`` says how many are worth building.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from . import records as rr
from .names import (
    AddrQuery,
    ApexQuery,
    InvalidName,
    NameQuery,
    NodeQuery,
    ServiceQuery,
    classify,
)
from .records import IN, Record, Row
from .settings import DNSSettings, Transport

__all__ = [
    "Built",
    "Found",
    "Parsed",
    "Rejected",
    "build_error",
    "build_response",
    "lookup_needed",
    "parse_request",
    "prepare_found",
    "udp_limit",
]

MAX_UDP_ANSWERS = 8  # Consul's maxUDPAnswerLimit
DEFAULT_UDP_SIZE = 512
MAX_UDP_SIZE = 65507  # the largest UDP payload over IPv4
MAX_TCP_SIZE = 65535
OUR_EDNS_PAYLOAD = 4096
CONSUL_SERVICE = "consul"  # the service the servers register; the NS records name them
MAX_NAMESERVERS = 3

_QR = 0x8000
_REFUSED_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
_ADDRESS_QTYPES = frozenset(
    {dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY, dns.rdatatype.CNAME}
)
_NODE_QTYPES = frozenset(
    {dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY, dns.rdatatype.TXT}
)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A well-formed query with one question, and what its name asks for."""

    message: dns.message.Message
    qname: dns.name.Name
    qtype: int
    query: NameQuery


@dataclass(frozen=True, slots=True)
class Rejected:
    """A query answered without any lookup: ``wire`` is the reply, None to drop it."""

    wire: bytes | None


@dataclass(frozen=True, slots=True)
class Found:
    """What the catalog returned: health rows for a service query, the node for a node query.

    ``filtered``: the rows are already the healthy, tag-matching ones (``prepare_found``).
    """

    rows: Sequence[Row] = ()
    node: Mapping[str, Any] | None = None
    filtered: bool = False


@dataclass(frozen=True, slots=True)
class Built:
    """An encoded reply; ``variants`` > 1 when other orderings of it exist."""

    wire: bytes
    variants: int = 1
    truncated: bool = False


@dataclass(slots=True)
class _Sections:
    rcode: int = dns.rcode.NOERROR
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    # Addresses of SRV and NS targets, each with the record that names it:
    # sent only when that record is, one per record (Consul's SRV extras).
    glue: list[tuple[Record, Record]] = field(default_factory=list)
    variants: int = 1
    more: bool = False  # answers were left out before encoding (the UDP answer cap)


def parse_request(wire: bytes, settings: DNSSettings) -> Parsed | Rejected:
    """Parse a query from the network; never raises.

    Shorter than a header or a response (QR set): dropped, so a spoofed
    reply cannot start a loop. Unparseable: FORMERR (echoing the ID).
    Opcode other than QUERY, AXFR/IXFR: NOTIMP. Not exactly one question:
    FORMERR. EDNS version above 0: BADVERS (RFC 6891 section 6.1.3). A class
    other than IN/ANY: REFUSED.
    """
    if len(wire) < 12 or int.from_bytes(wire[2:4], "big") & _QR:
        return Rejected(None)
    try:
        message = dns.message.from_wire(wire)
    except Exception:  # untrusted bytes: any parser failure is the client's error
        return Rejected(header_error(wire, dns.rcode.FORMERR))
    if message.opcode() != dns.opcode.QUERY:
        return Rejected(build_error(message, dns.rcode.NOTIMP, question=False))
    if len(message.question) != 1:
        return Rejected(build_error(message, dns.rcode.FORMERR, question=False))
    if message.edns > 0:
        return Rejected(build_error(message, dns.rcode.BADVERS))
    question = message.question[0]
    if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
        return Rejected(build_error(message, dns.rcode.REFUSED))
    if question.rdtype in _REFUSED_TYPES:
        return Rejected(build_error(message, dns.rcode.NOTIMP))
    query = classify(question.name, question.rdtype, settings)
    return Parsed(message, question.name, question.rdtype, query)


def lookup_needed(parsed: Parsed) -> ServiceQuery | NodeQuery | None:
    """The catalog lookup whose result ``build_response`` needs, None if none.

    SOA and NS questions for the domain need the servers: the ``consul``
    service, like Consul's ``getNameserversAndNodeRecord``.
    """
    query = parsed.query
    if isinstance(query, ServiceQuery | NodeQuery):
        return query
    if isinstance(query, ApexQuery) and parsed.qtype in (dns.rdatatype.SOA, dns.rdatatype.NS):
        return ServiceQuery(CONSUL_SERVICE, None, connect=False)
    return None


def prepare_found(parsed: Parsed, found: Found, settings: DNSSettings) -> Found:
    """``found`` with a service's rows reduced to the healthy ones matching the tag.

    Building from the result is the same (the filters are idempotent) but
    cheaper: a cache that builds several variants from one lookup filters once.
    """
    query = parsed.query
    if found.filtered or not isinstance(query, ServiceQuery):
        return found
    rows = [r for r in found.rows if rr.tag_matches(r, query.tag)]
    return Found(rows=rr.healthy_rows(rows, settings.only_passing), filtered=True)


def build_error(
    message: dns.message.Message,
    rcode: dns.rcode.Rcode,
    *,
    question: bool = True,
    recursion_available: bool = False,
) -> bytes:
    """An empty reply to ``message`` with ``rcode`` (SERVFAIL, REFUSED, ...)."""
    reply = dns.message.make_response(
        message, recursion_available=recursion_available, our_payload=OUR_EDNS_PAYLOAD
    )
    if not question:
        reply.question = []
    reply.set_rcode(rcode)
    return reply.to_wire()


def header_error(wire: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A reply built from the 12-byte header alone, for a query that does not parse."""
    reply = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    flags = int.from_bytes(wire[2:4], "big")
    opcode = dns.opcode.from_flags(flags)
    reply.flags = dns.flags.QR | dns.opcode.to_flags(opcode) | (flags & dns.flags.RD)
    reply.set_rcode(rcode)
    return reply.to_wire()


def udp_limit(message: dns.message.Message) -> int:
    """The largest UDP reply ``message``'s sender accepts: 512, or its EDNS0 size."""
    if message.edns < 0:
        return DEFAULT_UDP_SIZE
    return max(DEFAULT_UDP_SIZE, min(message.payload, MAX_UDP_SIZE))


def build_response(
    parsed: Parsed,
    found: Found,
    settings: DNSSettings,
    *,
    transport: Transport,
    rng: random.Random,
    now: float,
    variant: int = 0,
    recursion_available: bool = False,
) -> Built:
    """Encode the reply to ``parsed`` from the catalog's ``found``.

    ``now`` (wall-clock seconds) is the SOA serial; ``rng`` shuffles service
    instances; ``variant`` rotates the shuffle (see the module rules).
    """
    query = parsed.query
    sections = _Sections()
    if isinstance(query, ServiceQuery):
        cap = _answer_cap(parsed, settings, transport)
        _service(sections, parsed, query, found, settings, rng, variant, cap)
    elif isinstance(query, NodeQuery):
        _node(sections, parsed, found, settings)
    elif isinstance(query, AddrQuery):
        _addr(sections, parsed, query, settings)
    elif isinstance(query, ApexQuery):
        _apex(sections, parsed, found, settings, rng, now)
    elif isinstance(query, InvalidName):
        sections.rcode = dns.rcode.NXDOMAIN
    else:
        return Built(
            build_error(parsed.message, dns.rcode.REFUSED, recursion_available=recursion_available)
        )
    if sections.rcode == dns.rcode.NXDOMAIN or not sections.answer:
        sections.authority.append(rr.soa_record(settings, now))
    reply = dns.message.make_response(
        parsed.message, recursion_available=recursion_available, our_payload=OUR_EDNS_PAYLOAD
    )
    reply.flags |= dns.flags.AA
    reply.set_rcode(dns.rcode.Rcode(sections.rcode))
    return _encode(reply, sections, parsed, settings, transport)


def _service(
    sections: _Sections,
    parsed: Parsed,
    query: ServiceQuery,
    found: Found,
    settings: DNSSettings,
    rng: random.Random,
    variant: int,
    cap: int,
) -> None:
    rows = list(prepare_found(parsed, found, settings).rows)
    if not rows:
        sections.rcode = dns.rcode.NXDOMAIN
        return
    rng.shuffle(rows)
    if len(rows) > 1:
        sections.variants = min(len(rows), max(1, settings.max_variants))
        start = (variant % sections.variants) * len(rows) // sections.variants
        rows = rows[start:] + rows[:start]
    ttl = settings.service_ttl_seconds(query.service)
    if parsed.qtype == dns.rdatatype.SRV:
        _srv_answers(sections, parsed.qname, rows, ttl, settings, cap)
    elif parsed.qtype in _ADDRESS_QTYPES:
        _address_answers(sections, parsed, rows, ttl, settings.a_record_limit, cap)


def _answer_cap(parsed: Parsed, settings: DNSSettings, transport: Transport) -> int:
    """How many answers a UDP reply without EDNS0 can carry (0: no such cap).

    Building only these (instead of every instance, then cutting) keeps a
    miss cheap for large services; ``_Sections.more`` remembers the cut.
    """
    if transport == "udp" and udp_limit(parsed.message) == DEFAULT_UDP_SIZE:
        return min(MAX_UDP_ANSWERS, settings.udp_answer_limit)
    return 0


def _address_answers(
    sections: _Sections, parsed: Parsed, rows: list[Row], ttl: int, limit: int, cap: int
) -> None:
    seen: set[str] = set()
    first_cname: Record | None = None
    for i, row in enumerate(rows):
        address = _effective_address(row)
        if address in seen:  # one record per address: a node may run the service twice
            continue
        seen.add(address)
        record = rr.address_record(parsed.qname, address, parsed.qtype, ttl)
        if record is None:
            continue
        if record.rdata.rdtype == dns.rdatatype.CNAME:
            first_cname = first_cname or record
            continue
        sections.answer.append(record)
        if len(sections.answer) == limit:  # a_record_limit: not a truncation
            break
        if len(sections.answer) == cap:
            sections.more = any(_effective_address(r) not in seen for r in rows[i + 1 :])
            break
    if not sections.answer and first_cname is not None:
        sections.answer.append(first_cname)


def _effective_address(row: Row) -> str:
    address, node_address = rr.service_address(row)
    return address or node_address


def _srv_key(row: Row) -> tuple[str, str, object]:
    node = str(row.get("Node", {}).get("Node", ""))
    return node, _effective_address(row), row.get("Service", {}).get("Port")


def _srv_answers(
    sections: _Sections,
    qname: dns.name.Name,
    rows: list[Row],
    ttl: int,
    settings: DNSSettings,
    cap: int,
) -> None:
    seen: set[tuple[str, str, object]] = set()
    for i, row in enumerate(rows):
        key = _srv_key(row)
        if key in seen:  # Consul's (node, address, port) de-duplication
            continue
        seen.add(key)
        address, node_address = rr.service_address(row)
        target, glue = _srv_target(key[0], address, node_address, ttl, settings)
        if target is None:
            continue
        record = rr.srv_record(qname, ttl, row, target)
        sections.answer.append(record)
        if glue is not None:
            sections.glue.append((record, glue))
        if len(sections.answer) == cap:
            sections.more = any(_srv_key(r) not in seen for r in rows[i + 1 :])
            break


def _srv_target(
    node: str, address: str, node_address: str, ttl: int, settings: DNSSettings
) -> tuple[dns.name.Name | None, Record | None]:
    """The SRV target and its glue: the node's name when the instance has no address
    of its own, ``<hex>.addr.<dc>.<domain>`` for its own IP (even one equal to the
    node's, as Consul's ``makeRecordFromIP``), the host name itself otherwise."""
    effective = address or node_address
    ip = rr.parse_ip(effective)
    if ip is None:
        return rr.hostname(effective), None
    target = rr.node_target(node, settings) if not address else None
    if target is None:
        target = rr.addr_target(ip, settings)
    return target, rr.ip_record(target, ip, dns.rdatatype.SRV, ttl)


def _node(sections: _Sections, parsed: Parsed, found: Found, settings: DNSSettings) -> None:
    if found.node is None:
        sections.rcode = dns.rcode.NXDOMAIN
        return
    if parsed.qtype not in _NODE_QTYPES:
        return
    node = rr.node_object(found.node)
    ttl = settings.node_ttl_seconds
    if parsed.qtype != dns.rdatatype.TXT:
        record = rr.address_record(parsed.qname, str(node.get("Address") or ""), parsed.qtype, ttl)
        if record is not None:
            sections.answer.append(record)
    if parsed.qtype in (dns.rdatatype.TXT, dns.rdatatype.ANY):
        meta = node.get("Meta")
        if isinstance(meta, Mapping):
            sections.answer.extend(rr.meta_txt(parsed.qname, meta, ttl))


def _addr(sections: _Sections, parsed: Parsed, query: AddrQuery, settings: DNSSettings) -> None:
    # Consul puts the address in the additional section when the type does not match.
    record = rr.ip_record(parsed.qname, query.address, dns.rdatatype.ANY, settings.node_ttl_seconds)
    assert record is not None  # ANY accepts both families
    wanted = dns.rdatatype.A if query.address.version == 4 else dns.rdatatype.AAAA
    if parsed.qtype in (wanted, dns.rdatatype.ANY):
        sections.answer.append(record)
    else:
        sections.additional.append(record)


def _apex(
    sections: _Sections,
    parsed: Parsed,
    found: Found,
    settings: DNSSettings,
    rng: random.Random,
    now: float,
) -> None:
    if parsed.qtype not in (dns.rdatatype.SOA, dns.rdatatype.NS):
        return
    servers = rr.healthy_rows(found.rows, only_passing=False)
    rng.shuffle(servers)
    ns: list[Record] = []
    named: set[dns.name.Name] = set()
    for row in servers:
        node = rr.node_object(row.get("Node") or {})
        target = rr.node_target(str(node.get("Node", "")).lower(), settings)
        if target is None or target in named:
            continue
        named.add(target)
        ns.append(rr.ns_record(settings, target))
        ip = rr.parse_ip(str(node.get("Address") or ""))
        glue = None if ip is None else rr.ip_record(target, ip, dns.rdatatype.ANY, ns[-1].ttl)
        if glue is not None:
            sections.glue.append((ns[-1], glue))
        if len(ns) == MAX_NAMESERVERS:
            break
    if parsed.qtype == dns.rdatatype.SOA:
        sections.answer.append(rr.soa_record(settings, now))
        sections.authority.extend(ns)
    else:
        sections.answer.extend(ns)


def _encode(
    reply: dns.message.Message,
    sections: _Sections,
    parsed: Parsed,
    settings: DNSSettings,
    transport: Transport,
) -> Built:
    answers = sections.answer
    total = len(answers)
    if transport == "udp":
        max_size = udp_limit(parsed.message)
        if max_size == DEFAULT_UDP_SIZE:
            answers = answers[: min(MAX_UDP_ANSWERS, settings.udp_answer_limit)]
    else:
        max_size = MAX_TCP_SIZE
    wire = _try_encode(reply, sections, answers, max_size)
    if wire is None and len(answers) > 1:
        sections.authority = []  # Consul drops the authority section first
        answers, wire = _largest_fit(reply, sections, answers, max_size)
    forced = wire is None
    if forced:
        # Not even one record fits: an empty answer that tells the client to use TCP.
        sections.authority, sections.additional, answers = [], [], []
    truncated = len(answers) < total or sections.more
    if forced or (truncated and transport == "udp" and settings.enable_truncate):
        reply.flags |= dns.flags.TC
        wire = None
    if wire is None:
        wire = _try_encode(reply, sections, answers, max_size)
        assert wire is not None, "a header and one question always fit"
    return Built(wire, sections.variants, truncated)


def _largest_fit(
    reply: dns.message.Message,
    sections: _Sections,
    answers: list[Record],
    max_size: int,
) -> tuple[list[Record], bytes | None]:
    """Binary search for the most leading answers whose reply fits ``max_size``."""
    low, high = 0, len(answers)  # answers[:low] fits (or low == 0), answers[:high] does not
    best: bytes | None = None
    while high - low > 1:
        middle = (low + high) // 2
        wire = _try_encode(reply, sections, answers[:middle], max_size)
        if wire is None:
            high = middle
        else:
            low, best = middle, wire
    return answers[:low], best


def _try_encode(
    reply: dns.message.Message,
    sections: _Sections,
    answers: list[Record],
    max_size: int,
) -> bytes | None:
    """The reply with ``answers`` and the glue they refer to; None if over ``max_size``."""
    sent = {id(r) for r in (*answers, *sections.authority)}
    glue = [g for ref, g in sections.glue if id(ref) in sent]
    reply.index = {}  # find_rrset's index would still hold the RRsets of a previous try
    reply.answer = _rrsets(answers)
    reply.authority = _rrsets(sections.authority)
    # One RRset per glue record: an RRset would merge the identical address
    # records of several instances on one node into one.
    reply.additional = [*_rrsets(glue, merge=False), *_rrsets(sections.additional)]
    try:
        # want_shuffle=False: the order is ours (seeded, rotated), not dnspython's global RNG.
        return reply.to_wire(max_size=max_size, want_shuffle=False)
    except dns.exception.TooBig:
        return None


def _rrsets(records: list[Record], *, merge: bool = True) -> list[dns.rrset.RRset]:
    """Records grouped into RRsets by owner and type, in order of first appearance
    (without ``merge``: each record its own RRset, duplicates kept)."""
    groups: dict[tuple[dns.name.Name, int] | int, dns.rrset.RRset] = {}
    for i, record in enumerate(records):
        key = (record.name, record.rdata.rdtype) if merge else i
        rrset = groups.get(key)
        if rrset is None:
            rrset = groups[key] = dns.rrset.RRset(record.name, IN, record.rdata.rdtype)
        rrset.add(record.rdata, record.ttl)
    return list(groups.values())
