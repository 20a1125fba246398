"""Checking the SPIFFE ID a TLS peer presents (sans-I/O).

The chain was verified by OpenSSL against the current roots; here the URI
SAN of the peer's leaf is read from ``SSLSocket.getpeercert()`` (decoded by
OpenSSL: no ``cryptography`` import in the proxy process, which keeps its
RSS ~8 MB smaller) and compared with what the proxy expects:

* inbound, the client must be a service of our trust domain (any
  datacenter): its service name is the intention source;
* outbound, the server must be ``svc/<destination>`` of our trust domain,
  as Consul's built-in proxy checks (connect/tls.go ``verifyServerCertMatchesURI``).

Only Consul's service ID shape is accepted
(``spiffe://<td>[/ap/default]/ns/<ns>/dc/<dc>/svc/<service>``, names of
``[A-Za-z0-9._-]``, no percent-escapes): the same IDs ``connect.spiffe``
writes, parsed strictly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import PeerIdentityError

_NAME = r"[A-Za-z0-9._-]+"
_SERVICE_ID = re.compile(
    rf"spiffe://(?P<td>[a-z0-9._-]+)(?:/ap/default)?/ns/(?P<ns>{_NAME})"
    rf"/dc/(?P<dc>{_NAME})/svc/(?P<svc>{_NAME})"
)


@dataclass(frozen=True, slots=True)
class PeerID:
    """A service identity read from a peer certificate."""

    trust_domain: str
    datacenter: str
    service: str
    namespace: str = "default"

    def uri(self) -> str:
        return (
            f"spiffe://{self.trust_domain}/ns/{self.namespace}/dc/{self.datacenter}"
            f"/svc/{self.service}"
        )


def parse_service_uri(uri: str) -> PeerID:
    """A Consul service SPIFFE ID. Raises ``PeerIdentityError`` if it is not one."""
    m = _SERVICE_ID.fullmatch(uri)
    if m is None or any(seg in (".", "..") for seg in m.group("ns", "dc", "svc")):
        raise PeerIdentityError(f"peer URI SAN {uri[:200]!r} is not a service SPIFFE ID")
    return PeerID(m["td"], m["dc"], m["svc"], m["ns"])


def peer_uri(cert: Mapping[str, Any] | None) -> str:
    """The single URI SAN of a ``getpeercert()`` dict. Raises ``PeerIdentityError``."""
    if not cert:
        raise PeerIdentityError("peer presented no certificate")
    uris = [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]
    if len(uris) != 1:
        raise PeerIdentityError(f"peer certificate has {len(uris)} URI SANs, want exactly one")
    return str(uris[0])


def peer_serial(cert: Mapping[str, Any] | None) -> str:
    """The certificate serial as Consul prints it (``aa:bb:..``), or ""."""
    raw = str((cert or {}).get("serialNumber") or "").lower()
    if len(raw) % 2:
        raw = "0" + raw
    return ":".join(raw[i : i + 2] for i in range(0, len(raw), 2))


def peer_service(cert: Mapping[str, Any] | None, trust_domain: str) -> PeerID:
    """The service identity of a peer of ``trust_domain``.

    Raises ``PeerIdentityError`` saying why it is refused.
    """
    sid = parse_service_uri(peer_uri(cert))
    if sid.trust_domain != trust_domain.lower():
        raise PeerIdentityError(
            f"peer trust domain {sid.trust_domain!r} is not ours ({trust_domain!r})"
        )
    if sid.namespace != "default":
        raise PeerIdentityError(f"peer namespace {sid.namespace!r} is not supported")
    return sid


def check_server(cert: Mapping[str, Any] | None, *, trust_domain: str, destination: str) -> PeerID:
    """Verify that an upstream server is ``destination`` in ``trust_domain``.

    Raises ``PeerIdentityError`` naming the identity found instead.
    """
    sid = peer_service(cert, trust_domain)
    if sid.service != destination:
        raise PeerIdentityError(f"server presented {sid.uri()!r}, expected service {destination!r}")
    return sid
