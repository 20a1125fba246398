"""TLS contexts for one local identity, rebuilt when roots or the leaf change.

Both sides are TLS 1.3 only and verify the peer's chain against every root
the agent lists (``Roots[].RootCert`` plus their ``IntermediateCerts``, so
leaves signed by a cross-signed intermediate verify during a root
rotation). Hostnames are not checked: the SPIFFE ID is (identity.py).
Connections take the context current when they start, so a swap never
touches an established connection.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ProxyConfigError
from .verdict import ALPN


@dataclass(frozen=True, slots=True)
class Roots:
    """The agent's CA roots answer, reduced to what the proxy uses."""

    trust_domain: str
    pems: tuple[str, ...]
    active_id: str = ""


@dataclass(frozen=True, slots=True)
class LeafCert:
    """A leaf answer: the chain to present (leaf first) and its key."""

    cert_pem: str
    key_pem: str
    serial: str = ""
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class Contexts:
    """The server (inbound) and client (outbound) contexts of an identity."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    trust_domain: str
    serial: str


def roots_from_json(body: Any) -> Roots:
    """Parse ``/v1/agent/connect/ca/roots``. Raises ``ProxyConfigError``."""
    if not isinstance(body, Mapping):
        raise ProxyConfigError("roots", "answer is not an object")
    td = body.get("TrustDomain")
    if not isinstance(td, str) or not td:
        raise ProxyConfigError("roots.TrustDomain", "is required")
    pems: list[str] = []
    for root in body.get("Roots") or ():
        if not isinstance(root, Mapping):
            continue
        cert = root.get("RootCert")
        if isinstance(cert, str) and cert.strip():
            pems.append(cert.strip() + "\n")
        for inter in root.get("IntermediateCerts") or ():
            if isinstance(inter, str) and inter.strip():
                pems.append(inter.strip() + "\n")
    if not pems:
        raise ProxyConfigError("roots.Roots", "no root certificate")
    return Roots(
        trust_domain=td.lower(), pems=tuple(pems), active_id=str(body.get("ActiveRootID") or "")
    )


def leaf_from_json(body: Any) -> LeafCert:
    """Parse ``/v1/agent/connect/ca/leaf/<svc>``. Raises ``ProxyConfigError``."""
    if not isinstance(body, Mapping):
        raise ProxyConfigError("leaf", "answer is not an object")
    cert = body.get("CertPEM")
    key = body.get("PrivateKeyPEM")
    if not isinstance(cert, str) or "BEGIN CERTIFICATE" not in cert:
        raise ProxyConfigError("leaf.CertPEM", "is required")
    if not isinstance(key, str) or "PRIVATE KEY" not in key:
        raise ProxyConfigError("leaf.PrivateKeyPEM", "is required")
    index = body.get("ModifyIndex")
    return LeafCert(
        cert_pem=cert,
        key_pem=key,
        serial=str(body.get("SerialNumber") or ""),
        modify_index=index if isinstance(index, int) else 0,
    )


def _load_chain(ctx: ssl.SSLContext, leaf: LeafCert) -> None:
    # ssl only loads certificates and keys from files: a private 0600 file,
    # removed at once (tmpfs-backed /dev/shm when there is one).
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, path = tempfile.mkstemp(prefix="meshd-proxy-", suffix=".pem", dir=base)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(leaf.cert_pem.strip() + "\n" + leaf.key_pem.strip() + "\n")
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


def _context(purpose: int, roots: Roots, leaf: LeafCert) -> ssl.SSLContext:
    proto = ssl.PROTOCOL_TLS_SERVER if purpose == 0 else ssl.PROTOCOL_TLS_CLIENT
    ctx = ssl.SSLContext(proto)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata="".join(roots.pems))
    _load_chain(ctx, leaf)
    # Offered by the client, taken by the server: the inbound side then tells
    # the caller its intention verdict (verdict.py).
    ctx.set_alpn_protocols([ALPN])
    if purpose == 0:
        # No resumption between our own proxies: skip issuing tickets.
        ctx.num_tickets = 0
    return ctx


def build_contexts(roots: Roots, leaf: LeafCert) -> Contexts:
    """Fresh server and client contexts. Raises ``ProxyConfigError`` if the
    certificate, key or roots cannot be loaded."""
    try:
        server = _context(0, roots, leaf)
        client = _context(1, roots, leaf)
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise ProxyConfigError("tls", f"cannot load certificates: {exc}") from None
    return Contexts(
        server=server, client=client, trust_domain=roots.trust_domain, serial=leaf.serial
    )
