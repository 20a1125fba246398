"""Checking the SPIFFE ID a TLS peer presents (sans-I/O).

The chain was verified by OpenSSL against the current roots; here the URI
SAN of the peer's leaf is read from ``SSLSocket.getpeercert()`` (decoded by
OpenSSL: no ``cryptography`` import in the proxy process, which keeps its
RSS ~8 MB smaller), parsed by ``connect.spiffe`` and compared with what the
proxy expects:

* inbound, the client must be a service of our trust domain (any
  datacenter): its service name is the intention source;
* outbound, the server must be ``svc/<destination>`` of our trust domain,
  as Consul's built-in proxy checks (connect/tls.go ``verifyServerCertMatchesURI``).

Only Consul's service ID shape is accepted
(``spiffe://<td>[/ap/default]/ns/<ns>/dc/<dc>/svc/<service>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import SpiffeError
from ..spiffe import ServiceID, parse_spiffe_id
from .errors import PeerIdentityError

# The proxy names a peer by the service identity connect.spiffe parses.
PeerID = ServiceID


def parse_service_uri(uri: str) -> PeerID:
    """A Consul service SPIFFE ID. Raises ``PeerIdentityError`` if it is not one."""
    try:
        ident = parse_spiffe_id(uri)
    except SpiffeError as exc:
        raise PeerIdentityError(f"peer URI SAN {uri[:200]!r}: {exc}") from None
    if not isinstance(ident, ServiceID):
        raise PeerIdentityError(f"peer URI SAN {uri[:200]!r} is not a service SPIFFE ID")
    return ident


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
