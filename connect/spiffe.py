"""SPIFFE IDs as Consul Connect writes them, and parsing them back.

Consul's shapes (agent/connect/uri*.go):

    spiffe://<trust-domain>                                      signing (CA) ID
    spiffe://<td>/ns/<ns>/dc/<dc>/svc/<service>                  service ID
    spiffe://<td>/agent/client/dc/<dc>/id/<node>                 agent ID

An optional ``/ap/default`` prefix (Consul Enterprise's admin partition, always
"default" here) is accepted on service IDs. Parsing follows the SPIFFE ID
spec (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md):
lowercase trust domain of ``[a-z0-9._-]``, no port, userinfo, query or
fragment, no empty, "." or ".." path segments, at most 2048 bytes. Like
Consul (which reads ``URL.RawPath`` and unescapes it), each path segment is
percent-decoded; the decoded text must still be made of ``[A-Za-z0-9._-]``,
so an encoded "/" cannot smuggle in an extra segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes

from .errors import SpiffeError

if TYPE_CHECKING:
    # Imported where certificates are read: the proxy parses SPIFFE IDs from
    # OpenSSL's getpeercert() and stays ~8 MB smaller without cryptography.
    from cryptography import x509

MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN = 255
_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9._-]+")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")
_RAW_SEGMENT_RE = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})+")


def _seg(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class ServiceID:
    """The identity of a service instance in a leaf certificate."""

    trust_domain: str
    datacenter: str
    service: str
    namespace: str = "default"

    def uri(self) -> str:
        """``spiffe://<td>/ns/<ns>/dc/<dc>/svc/<service>`` (Consul's form)."""
        return (
            f"spiffe://{self.trust_domain}/ns/{_seg(self.namespace)}"
            f"/dc/{_seg(self.datacenter)}/svc/{_seg(self.service)}"
        )


@dataclass(frozen=True, slots=True)
class SigningID:
    """The identity of a CA (root or intermediate) of a trust domain."""

    trust_domain: str

    def uri(self) -> str:
        """``spiffe://<td>``."""
        return f"spiffe://{self.trust_domain}"


@dataclass(frozen=True, slots=True)
class AgentID:
    """The identity of a client agent (Consul's agent certificates)."""

    trust_domain: str
    datacenter: str
    node: str

    def uri(self) -> str:
        """``spiffe://<td>/agent/client/dc/<dc>/id/<node>``."""
        return (
            f"spiffe://{self.trust_domain}/agent/client/dc/{_seg(self.datacenter)}"
            f"/id/{_seg(self.node)}"
        )


SpiffeID = ServiceID | SigningID | AgentID


def trust_domain_for(cluster_id: str) -> str:
    """The trust domain of a cluster: ``<cluster_id>.consul``, lowercased
    (SPIFFE trust domains are lowercase; cluster IDs are UUIDs)."""
    return f"{cluster_id}.consul".lower()


def _check_trust_domain(td: str) -> str:
    if not td:
        raise SpiffeError("SPIFFE ID has an empty trust domain")
    if "@" in td:
        raise SpiffeError("SPIFFE ID may not contain userinfo")
    if ":" in td:
        raise SpiffeError("SPIFFE ID may not contain a port")
    if len(td) > MAX_TRUST_DOMAIN:
        raise SpiffeError(f"trust domain is longer than {MAX_TRUST_DOMAIN} characters")
    if td != td.lower():
        raise SpiffeError(f"trust domain {td!r} must be lowercase")
    if not _TRUST_DOMAIN_RE.fullmatch(td):
        raise SpiffeError(f"trust domain {td!r} has characters outside [a-z0-9._-]")
    return td


def _decode_segment(raw: str) -> str:
    if not raw:
        raise SpiffeError("SPIFFE ID path has an empty segment")
    if not _RAW_SEGMENT_RE.fullmatch(raw):
        if "%" in raw:
            raise SpiffeError(f"SPIFFE ID path segment {raw!r} has a malformed percent-escape")
        raise SpiffeError(f"SPIFFE ID path segment {raw!r} has bad characters")
    try:
        value = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise SpiffeError(f"SPIFFE ID path segment {raw!r} is not UTF-8") from None
    if value in (".", ".."):
        raise SpiffeError("SPIFFE ID path may not contain '.' or '..' segments")
    if not _SEGMENT_RE.fullmatch(value):
        raise SpiffeError(f"SPIFFE ID path segment {value!r} has characters outside [A-Za-z0-9._-]")
    return value


def _from_segments(td: str, segs: list[str]) -> SpiffeID:
    if len(segs) >= 2 and segs[0] == "ap":
        if segs[1] != "default":
            raise SpiffeError(f"admin partition {segs[1]!r} is not supported (only 'default')")
        segs = segs[2:]
    match segs:
        case ["ns", ns, "dc", dc, "svc", svc]:
            return ServiceID(trust_domain=td, datacenter=dc, service=svc, namespace=ns)
        case ["agent", "client", "dc", dc, "id", node]:
            return AgentID(trust_domain=td, datacenter=dc, node=node)
    raise SpiffeError("SPIFFE ID path is not a service, agent or signing ID: /" + "/".join(segs))


def parse_spiffe_id(uri: str) -> ServiceID | SigningID | AgentID:
    """Parse a SPIFFE ID in one of Consul's shapes.

    Raises ``SpiffeError`` whose message says why the string is refused.
    """
    if len(uri.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise SpiffeError(f"SPIFFE ID is longer than {MAX_ID_BYTES} bytes")
    if not uri.isascii() or any(c.isspace() or ord(c) < 0x20 for c in uri):
        raise SpiffeError("SPIFFE ID has non-ASCII, control or space characters")
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "spiffe":
        raise SpiffeError(f"not a SPIFFE ID (scheme must be spiffe://): {uri[:64]!r}")
    if "?" in rest or "#" in rest:
        raise SpiffeError("SPIFFE ID may not have a query or fragment")
    td, slash, path = rest.partition("/")
    td = _check_trust_domain(td)
    if not slash:
        return SigningID(trust_domain=td)
    if not path:
        raise SpiffeError("SPIFFE ID may not end with '/'")
    return _from_segments(td, [_decode_segment(s) for s in path.split("/")])


@lru_cache(maxsize=4096)
def _service_id_from_der(der: bytes) -> ServiceID:
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise SpiffeError(f"certificate cannot be parsed: {exc}") from None
    return _service_id_of(cert)


def _service_id_of(cert: x509.Certificate) -> ServiceID:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise SpiffeError("certificate has no subjectAltName") from None
    except ValueError as exc:
        raise SpiffeError(f"certificate extensions cannot be parsed: {exc}") from None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise SpiffeError(f"certificate has {len(uris)} URI SANs, want exactly one")
    parsed = parse_spiffe_id(uris[0])
    if not isinstance(parsed, ServiceID):
        raise SpiffeError(f"certificate URI SAN {uris[0]!r} is not a service ID")
    return parsed


def service_id_from_cert(cert: x509.Certificate | bytes) -> ServiceID:
    """The service identity in a leaf certificate (its single URI SAN).

    ``cert`` is a parsed certificate or its DER bytes; results are cached by
    DER, so calling this on every connection with the peer's DER is cheap.
    Raises ``SpiffeError`` if there is no URI SAN, more than one, or it is
    not a service ID. Does not verify the certificate.
    """
    if isinstance(cert, bytes | bytearray | memoryview):
        return _service_id_from_der(bytes(cert))
    from cryptography.hazmat.primitives.serialization import Encoding

    return _service_id_from_der(cert.public_bytes(Encoding.DER))
