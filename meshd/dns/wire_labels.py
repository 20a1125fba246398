"""DNS wire labels for metrics: a query's type and a reply's RCODE, read from
the raw message without parsing it (``Recorder.dns_query`` sees only bytes)."""

from __future__ import annotations

__all__ = ["dns_qtype", "dns_rcode"]

# Bounded label values: a client may send any 16-bit qtype.
_QTYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    255: "ANY",
}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def dns_qtype(query: bytes) -> str:
    """The first question's type, from the wire, without parsing the message."""
    n = len(query)
    if n < 12 or query[4:6] == b"\0\0":
        return "none"
    i = 12
    while i < n:
        length = query[i]
        if length == 0:
            i += 1
            break
        if length >= 0xC0:  # a compression pointer ends the name
            i += 2
            break
        i += 1 + length
    else:
        return "malformed"
    if i + 2 > n:
        return "malformed"
    return _QTYPES.get(int.from_bytes(query[i : i + 2], "big"), "other")


def dns_rcode(reply: bytes | None) -> str:
    """The reply's RCODE name ("dropped" when nothing was sent)."""
    if reply is None:
        return "dropped"
    if len(reply) < 4:
        return "malformed"
    return _RCODES.get(reply[3] & 0x0F, "other")
