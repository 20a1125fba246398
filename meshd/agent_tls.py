"""The agent CA and the server/client certificates agents use for RPC mTLS.

This is what ``meshd tls ca create`` and ``meshd tls cert create`` build on,
and it follows Consul's ``consul tls`` commands
(https://developer.hashicorp.com/consul/commands/tls): an ECDSA P-256 CA,
server certificates named ``server.<dc>.<domain>`` and client certificates
named ``client.<dc>.<domain>``, both also valid for ``localhost`` and
127.0.0.1. Servers dial each other, so server certificates carry both
serverAuth and clientAuth; Consul gives client certificates both as well.

Keys are written PEM-encoded, unencrypted (SEC1 "EC PRIVATE KEY", as Consul
writes them), to files with mode 0600.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connect.ca import CLOCK_SKEW, ca_builder, cert_to_pem, end_entity_extensions, key_usage

__all__ = ["create_ca", "create_cert", "write_pem"]

# Certificates are valid from a minute ago (connect.ca.CLOCK_SKEW) so a peer
# whose clock is slightly behind does not reject a certificate created just now.
# Agent RPC certificates only sign TLS handshakes: digitalSignature alone.
_DIGITAL_SIGNATURE = key_usage()


def _now(now: datetime.datetime | None) -> datetime.datetime:
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _check_label(field: str, value: str) -> None:
    # dc and domain become DNS names; refuse anything that cannot be one.
    labels = value.split(".")
    if not value or any(not lab or len(lab) > 63 for lab in labels):
        raise ValueError(f"{field}: {value!r} is not a valid DNS name")
    if not all(c.isalnum() or c in "-." for c in value) or not value.isascii():
        raise ValueError(f"{field}: {value!r} is not a valid DNS name")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def create_ca(
    *,
    domain: str = "consul",
    days: int = 1825,
    common_name: str | None = None,
    name_constraint: bool = False,
    now: datetime.datetime | None = None,
) -> tuple[str, str]:
    """Create a self-signed agent CA and return ``(cert_pem, key_pem)``.

    The key is ECDSA P-256; the certificate has CA:TRUE (critical), key usage
    certSign/cRLSign/digitalSignature and a subject key identifier. The
    common name defaults to ``Consul Agent CA <serial>``, as Consul names it.
    With ``name_constraint`` the CA may only sign DNS names under ``domain``
    and ``localhost`` (Consul's ``-name-constraint``). ``now`` (timezone-aware)
    replaces the wall clock, for tests.

    Raises ``ValueError`` for a non-positive ``days`` or an invalid domain.
    Synchronous and CPU-bound (a few milliseconds).
    """
    if days < 1:
        raise ValueError(f"days: must be at least 1, got {days}")
    _check_label("domain", domain)
    start = _now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshd"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"Consul Agent CA {serial}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    builder = ca_builder(
        name,
        name,
        key.public_key(),
        serial=serial,
        not_before=start - CLOCK_SKEW,
        not_after=start + datetime.timedelta(days=days),
        ski=ski,
        aki=ski,
    )
    if name_constraint:
        builder = builder.add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(domain), x509.DNSName("localhost")],
                excluded_subtrees=None,
            ),
            critical=True,
        )
    cert = builder.sign(key, hashes.SHA256())
    return cert_to_pem(cert), _key_pem(key)


def _load_ca(
    ca_cert_pem: str, ca_key_pem: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode("ascii"))
        ca_key = serialization.load_pem_private_key(ca_key_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ValueError(f"CA: cannot load certificate or key: {exc}") from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("CA: key is not an ECDSA key")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ca_key.public_key().public_bytes(*spki) != ca_cert.public_key().public_bytes(*spki):
        raise ValueError("CA: key does not match certificate")
    try:
        bc = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise ValueError("CA: certificate is not a CA (CA:TRUE missing)")
    return ca_cert, ca_key


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def create_cert(
    ca_cert_pem: str,
    ca_key_pem: str,
    *,
    kind: Literal["server", "client"],
    dc: str = "dc1",
    domain: str = "consul",
    ips: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    days: int = 365,
    now: datetime.datetime | None = None,
) -> tuple[str, str]:
    """Create a certificate signed by the agent CA; return ``(cert_pem, key_pem)``.

    ``kind="server"``: CN and DNS SAN ``server.<dc>.<domain>``, plus
    ``localhost`` and ``dns_names``; IP SANs 127.0.0.1 plus ``ips``.
    ``kind="client"``: ``client.<dc>.<domain>``, ``localhost``, 127.0.0.1
    (``ips``/``dns_names`` are added too when given). Both get EKU
    serverAuth+clientAuth, key usage digitalSignature, SKI and AKI. The
    validity ends ``days`` from now but never after the CA's own expiry.

    Raises ``ValueError`` for an unusable CA (not a CA, key mismatch, not
    ECDSA), an invalid IP, dc or domain, or a non-positive ``days``.
    Synchronous and CPU-bound.
    """
    if kind not in ("server", "client"):
        raise ValueError(f"kind: must be 'server' or 'client', got {kind!r}")
    if days < 1:
        raise ValueError(f"days: must be at least 1, got {days}")
    _check_label("dc", dc)
    _check_label("domain", domain)
    try:
        ip_objs = [ipaddress.ip_address(ip) for ip in _unique(["127.0.0.1", *ips])]
    except ValueError as exc:
        raise ValueError(f"ips: {exc}") from exc
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    start = _now(now)
    end = min(start + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)

    key = ec.generate_private_key(ec.SECP256R1())
    cn = f"{kind}.{dc}.{domain}"
    names = _unique([cn, "localhost", *dns_names])
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = end_entity_extensions(
        x509.CertificateBuilder(),
        key.public_key(),
        key_usage=_DIGITAL_SIGNATURE,
        ski=x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest,
        aki=ca_ski.digest,
        san=[*(x509.DNSName(n) for n in names), *(x509.IPAddress(ip) for ip in ip_objs)],
    )
    cert = (
        builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(end)
        .sign(ca_key, hashes.SHA256())
    )
    return cert_to_pem(cert), _key_pem(key)


def write_pem(path: str | os.PathLike[str], data: str, *, private: bool = False) -> None:
    """Write PEM ``data`` to ``path`` atomically (temp file, fsync, rename).

    ``private=True`` gives the file mode 0600 (keys); otherwise 0644. The
    temp file is created 0600, so a key is never readable by others, even
    briefly. An existing file is replaced, and its mode does not carry over.

    Raises ``OSError`` when the directory is missing or not writable; the
    target is then left as it was. Synchronous (blocking I/O: call it
    through ``trio.to_thread.run_sync`` from async code).
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".pem-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o600 if private else 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
