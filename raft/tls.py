"""``ssl.SSLContext`` builders for server-to-server mTLS (standard ``ssl`` only).

Both directions use TLS 1.3 and require a certificate that chains to the
cluster CA. The client side also checks that the server presents the DNS
name it dials (``server.<dc>.<domain>``); the server side checks the
client's name after the handshake (``raft.transport`` does, per connection
kind), because ``ssl`` has no server-side name check.

Contexts are built from files (``server_context``/``client_context``) or from
PEM strings (``TLSMaterial`` and the ``*_from_pem`` variants). ``ssl`` can
only load a certificate chain and key from files, so the PEM variants write
them to a private temporary directory (mode 0700, files 0600) that is removed
as soon as they are loaded.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import RaftError

__all__ = [
    "TLSConfigError",
    "TLSMaterial",
    "client_context",
    "client_context_from_pem",
    "peer_dns_names",
    "server_context",
    "server_context_from_pem",
]


class TLSConfigError(RaftError):
    """TLS material could not be read or does not form a usable context."""


@dataclass(frozen=True, slots=True)
class TLSMaterial:
    """CA certificate, own certificate and own private key, all PEM text."""

    ca_pem: str
    cert_pem: str
    key_pem: str

    def __repr__(self) -> str:
        # Never put the private key into a log line or a traceback.
        return "TLSMaterial(ca_pem=..., cert_pem=..., key_pem=<redacted>)"


class _HasPeerCert(Protocol):
    def getpeercert(self) -> Any: ...


def _base(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Reject certificates that only pass by OpenSSL's leniency (missing AKI,
    # bad encodings); certificates from meshd.agent_tls and Consul pass.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def _load_ca_file(ctx: ssl.SSLContext, ca_file: str | os.PathLike[str]) -> None:
    try:
        ctx.load_verify_locations(cafile=os.fspath(ca_file))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise TLSConfigError(f"CA file {os.fspath(ca_file)}: {exc}") from exc


def _load_ca_pem(ctx: ssl.SSLContext, ca_pem: str) -> None:
    try:
        ctx.load_verify_locations(cadata=ca_pem)
    except (OSError, ValueError) as exc:
        raise TLSConfigError(f"CA PEM: {exc}") from exc


def _load_chain_files(
    ctx: ssl.SSLContext, cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]
) -> None:
    try:
        ctx.load_cert_chain(os.fspath(cert_file), os.fspath(key_file))
    except (OSError, ValueError) as exc:
        raise TLSConfigError(
            f"certificate {os.fspath(cert_file)} / key {os.fspath(key_file)}: {exc}"
        ) from exc


def _load_chain_pem(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    with tempfile.TemporaryDirectory(prefix="meshd-tls-") as tmp:  # created 0700
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except (OSError, ValueError) as exc:
            # The message names temp files only; never the key material.
            raise TLSConfigError(f"certificate/key PEM: {exc}") from exc


def server_context(
    ca_file: str | os.PathLike[str],
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
) -> ssl.SSLContext:
    """Build the listener's context: TLS 1.3 minimum, client certificate
    required and verified against ``ca_file`` (mutual TLS).

    The caller checks the client's DNS SAN after the handshake (see
    ``peer_dns_names``). Raises ``TLSConfigError`` naming the file when a
    file is missing or does not parse, or the key does not match the
    certificate. Synchronous (reads files).
    """
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    # Servers never resume sessions with each other; skip the tickets.
    ctx.num_tickets = 0
    _load_ca_file(ctx, ca_file)
    _load_chain_files(ctx, cert_file, key_file)
    return ctx


def client_context(
    ca_file: str | os.PathLike[str],
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
) -> ssl.SSLContext:
    """Build the dialer's context: TLS 1.3 minimum, server certificate
    verified against ``ca_file`` with hostname checking (pass
    ``server_hostname=server.<dc>.<domain>`` when wrapping), and our own
    certificate presented for mutual TLS.

    Raises ``TLSConfigError`` naming the file when a file is missing or does
    not parse. Synchronous (reads files).
    """
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = True
    _load_ca_file(ctx, ca_file)
    _load_chain_files(ctx, cert_file, key_file)
    return ctx


def server_context_from_pem(material: TLSMaterial) -> ssl.SSLContext:
    """``server_context`` from PEM strings instead of files.

    The certificate and key pass through a private temporary directory that
    is removed before returning. Raises ``TLSConfigError`` on bad PEM.
    """
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    ctx.num_tickets = 0
    _load_ca_pem(ctx, material.ca_pem)
    _load_chain_pem(ctx, material.cert_pem, material.key_pem)
    return ctx


def client_context_from_pem(material: TLSMaterial) -> ssl.SSLContext:
    """``client_context`` from PEM strings instead of files.

    The certificate and key pass through a private temporary directory that
    is removed before returning. Raises ``TLSConfigError`` on bad PEM.
    """
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = True
    _load_ca_pem(ctx, material.ca_pem)
    _load_chain_pem(ctx, material.cert_pem, material.key_pem)
    return ctx


def peer_dns_names(ssl_object: _HasPeerCert) -> list[str]:
    """Return the DNS names in the peer certificate's subjectAltName.

    ``ssl_object`` is an ``ssl.SSLObject``/``ssl.SSLSocket`` or a
    ``trio.SSLStream`` after its handshake. Returns ``[]`` when there is no
    (verified) peer certificate; never raises for a missing SAN.
    """
    cert = ssl_object.getpeercert()
    if not cert:
        return []
    return [str(value) for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
