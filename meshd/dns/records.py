"""Resource records from Consul-shaped catalog rows. Pure functions.

A *row* is one entry of ``/v1/health/service/<name>``: ``{"Node": {...},
"Service": {...}, "Checks": [...]}``; a *node* is the ``Node`` object of
``/v1/catalog/node/<name>`` (the whole answer, with ``Node`` inside, is
accepted too). Behaviour follows Consul's ``agent/dns.go``: which rows are
healthy (``CheckServiceNodes.Filter``), SRV weights (``findWeight``), the
service address falling back to the node's, the SRV target naming
(``<node>.node.<dc>.<domain>`` or ``<hex>.addr.<dc>.<domain>``), and node
metadata as RFC 1464 TXT strings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY import CNAME as _cname
from dns.rdtypes.ANY import NS as _ns
from dns.rdtypes.ANY import SOA as _soa
from dns.rdtypes.ANY import TXT as _txt
from dns.rdtypes.IN import AAAA as _aaaa
from dns.rdtypes.IN import SRV as _srv
from dns.rdtypes.IN import A as _a

from .settings import DNSSettings

__all__ = [
    "Record",
    "Row",
    "addr_target",
    "address_record",
    "aggregated_status",
    "healthy_rows",
    "meta_txt",
    "node_object",
    "node_target",
    "ns_record",
    "soa_record",
    "srv_record",
    "tag_matches",
    "weight",
]

Row = Mapping[str, Any]

# dnspython's rdata constructors are not annotated; these names give them a type.
# Building rdata from values (not from text) keeps the miss path cheap.
_RdataFactory = Callable[..., dns.rdata.Rdata]
A: _RdataFactory = _a.A
AAAA: _RdataFactory = _aaaa.AAAA
CNAME: _RdataFactory = _cname.CNAME
NS: _RdataFactory = _ns.NS
SOA: _RdataFactory = _soa.SOA
SRV: _RdataFactory = _srv.SRV
TXT: _RdataFactory = _txt.TXT
IN = dns.rdataclass.IN
_ADDRESS_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY})
_CNAME_TYPES = _ADDRESS_TYPES | {dns.rdatatype.CNAME}
_MAINT_NODE = "_node_maintenance"
_MAINT_SERVICE_PREFIX = "_service_maintenance:"


class Record(NamedTuple):
    """One resource record: owner name, TTL in seconds and its data."""

    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _checks(row: Row) -> list[Mapping[str, Any]]:
    checks = row.get("Checks")
    if not isinstance(checks, list | tuple):
        return []
    # dict first: JSON rows are dicts, and the ABC check alone is slow in this loop.
    return [c for c in checks if isinstance(c, dict | Mapping)]


def healthy_rows(rows: Iterable[Row], only_passing: bool) -> list[Row]:
    """Rows without a critical check (and, with ``only_passing``, only passing checks).

    Consul's ``CheckServiceNodes.Filter``: warning is healthy unless
    ``only_passing``; maintenance checks are critical, so they exclude too.
    """
    out = []
    for row in rows:
        statuses = [c.get("Status") for c in _checks(row)]
        if "critical" in statuses:
            continue
        if only_passing and any(s != "passing" for s in statuses):
            continue
        out.append(row)
    return out


def tag_matches(row: Row, tag: str | None) -> bool:
    """True when ``tag`` is None or one of the service's tags (case-insensitive)."""
    if tag is None:
        return True
    tags = _mapping(row.get("Service")).get("Tags") or ()
    return any(isinstance(t, str) and t.lower() == tag for t in tags)


def aggregated_status(row: Row) -> str:
    """The status of a row's node and service checks, as Consul's ``AggregatedStatus``."""
    service = _mapping(row.get("Service")).get("Service", "")
    seen: set[str] = set()
    for check in _checks(row):
        if check.get("ServiceName", "") not in ("", service):
            continue
        check_id = str(check.get("CheckID", ""))
        if check_id == _MAINT_NODE or check_id.startswith(_MAINT_SERVICE_PREFIX):
            return "maintenance"
        status = check.get("Status")
        if status not in ("passing", "warning", "critical"):
            return ""
        seen.add(status)
    for status in ("critical", "warning"):
        if status in seen:
            return status
    return "passing"


def weight(row: Row) -> int:
    """The SRV weight: ``Weights.Warning`` when the row is warning, else ``Weights.Passing``.

    Consul's ``findWeight``: both default to 1, maintenance and critical give
    0, an unknown status 1.
    """
    weights = _mapping(_mapping(row.get("Service")).get("Weights"))
    status = aggregated_status(row)
    if status == "warning":
        value = weights.get("Warning", 1)
    elif status == "passing":
        value = weights.get("Passing", 1)
    elif status in ("maintenance", "critical"):
        value = 0
    else:
        value = 1
    return max(0, min(int(value) if isinstance(value, int) else 1, 65535))


def node_object(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """The node itself, from either a catalog node answer or a bare node object."""
    inner = node.get("Node")
    return inner if isinstance(inner, Mapping) else node


def service_address(row: Row) -> tuple[str, str]:
    """``(service address or "", node address)``: the service's falls back to the node's."""
    address = _mapping(row.get("Service")).get("Address") or ""
    node_address = _mapping(row.get("Node")).get("Address") or ""
    return str(address), str(node_address)


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address, or None when it is a host name (or empty)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def hostname(text: str) -> dns.name.Name | None:
    """``text`` as an absolute DNS name (a CNAME or SRV target), None if it is not one."""
    try:
        return dns.name.from_text(text) if text else None
    except dns.exception.DNSException:
        return None


def address_record(
    name: dns.name.Name,
    address: str,
    qtype: int,
    ttl: int,
) -> Record | None:
    """The A, AAAA or CNAME record that answers ``qtype`` at ``name`` for ``address``.

    An IPv4 address answers A (and ANY), an IPv6 address AAAA (and ANY), a
    host name a CNAME to it (A, AAAA, ANY, CNAME); None when nothing fits
    (an A question for an IPv6-only service is NODATA, as in Consul).
    """
    ip = parse_ip(address)
    if ip is None:
        target = hostname(address)
        if target is None or qtype not in _CNAME_TYPES:
            return None
        return Record(name, ttl, CNAME(IN, dns.rdatatype.CNAME, target))
    return ip_record(name, ip, qtype, ttl)


def ip_record(
    name: dns.name.Name,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    qtype: int,
    ttl: int,
) -> Record | None:
    """The A or AAAA record for ``ip`` if ``qtype`` asks for it (SRV glue asks for both)."""
    if ip.version == 4:
        if qtype in (dns.rdatatype.A, dns.rdatatype.ANY, dns.rdatatype.SRV):
            return Record(name, ttl, A(IN, dns.rdatatype.A, str(ip)))
        return None
    if qtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY, dns.rdatatype.SRV):
        return Record(name, ttl, AAAA(IN, dns.rdatatype.AAAA, str(ip)))
    return None


def node_target(node: str, settings: DNSSettings) -> dns.name.Name | None:
    """``<node>.node.<dc>.<domain>.``, None when the node name cannot be a DNS name."""
    try:
        return dns.name.from_text(f"{node}.node.{settings.datacenter}", origin=settings.origin)
    except dns.exception.DNSException:
        return None


def addr_target(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, settings: DNSSettings
) -> dns.name.Name:
    """``<hex>.addr.<dc>.<domain>.``: a target name that encodes the address itself."""
    return dns.name.from_text(f"{ip.packed.hex()}.addr.{settings.datacenter}", settings.origin)


def srv_record(name: dns.name.Name, ttl: int, row: Row, target: dns.name.Name) -> Record:
    """The SRV record of one instance: priority 1, weight from its health, its port."""
    port = _mapping(row.get("Service")).get("Port") or 0
    port = max(0, min(int(port) if isinstance(port, int) else 0, 65535))
    return Record(name, ttl, SRV(IN, dns.rdatatype.SRV, 1, weight(row), port, target))


def soa_record(settings: DNSSettings, now: float) -> Record:
    """The domain's SOA: ``ns.<domain>.``, ``hostmaster.<domain>.``, serial from ``now``."""
    origin = settings.origin
    soa = settings.soa
    rdata = SOA(
        IN,
        dns.rdatatype.SOA,
        dns.name.Name((b"ns", *origin.labels)),
        dns.name.Name((b"hostmaster", *origin.labels)),
        int(now) & 0xFFFFFFFF,
        soa.refresh,
        soa.retry,
        soa.expire,
        soa.min_ttl,
    )
    return Record(origin, soa.min_ttl, rdata)


def ns_record(settings: DNSSettings, target: dns.name.Name) -> Record:
    """An NS record of the domain naming one server."""
    rdata = NS(IN, dns.rdatatype.NS, target)
    return Record(settings.origin, settings.node_ttl_seconds, rdata)


def meta_txt(name: dns.name.Name, meta: Mapping[str, Any], ttl: int) -> list[Record]:
    """Node metadata as TXT records: ``key=value`` (RFC 1464), ``rfc1035-`` keys raw."""
    out = []
    for key, value in sorted(meta.items()):
        text = str(value) if key.lower().startswith("rfc1035-") else _rfc1464(key, str(value))
        data = text.encode()
        chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        out.append(Record(name, ttl, TXT(IN, dns.rdatatype.TXT, chunks)))
    return out


def _rfc1464(key: str, value: str) -> str:
    # RFC 1464 section 2: backquote `, = and the leading/trailing blanks of the key.
    key = key.replace("`", "``").replace("=", "`=")
    stripped = key.lstrip(" ")
    key = "` " * (len(key) - len(stripped)) + stripped
    stripped = key.rstrip(" ")
    key = stripped + "` " * (len(key) - len(stripped))
    return f"{key}={value.replace('`', '``')}"
