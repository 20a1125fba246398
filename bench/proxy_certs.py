"""The mesh certificates both proxy pairs present: web's and api's leaves and
the roots, either taken from a meshd agent (its Connect CA, so Envoy uses the
very leaves meshd's proxies use) or generated here with ``cryptography`` in
the same shape (SPIFFE URI SANs, EC P-256, server + client auth) when no
agent can hand them out."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Leaf:
    cert_pem: str  # the leaf, then any intermediates
    key_pem: str

    @property
    def spiffe_id(self) -> str:
        """The leaf's URI SAN (``spiffe://<trust domain>/ns/.../svc/<name>``)."""
        cert = x509.load_pem_x509_certificate(self.cert_pem.encode())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        if not uris:
            raise ValueError("leaf certificate has no URI SAN")
        return uris[0]


@dataclass(frozen=True)
class MeshCerts:
    """Leaves for the client side (``web``) and the server side (``api``)."""

    roots_pem: str
    web: Leaf
    api: Leaf
    source: str  # "meshd agent" or "generated"

    def write(self, directory: Path) -> dict[str, Path]:
        """PEM files for a proxy that reads files (Envoy): name -> path."""
        directory.mkdir(parents=True, exist_ok=True)
        files = {
            "roots": self.roots_pem,
            "web.crt": self.web.cert_pem,
            "web.key": self.web.key_pem,
            "api.crt": self.api.cert_pem,
            "api.key": self.api.key_pem,
        }
        paths = {}
        for name, text in files.items():
            path = directory / name
            path.write_text(text)
            path.chmod(0o600)
            paths[name] = path
        return paths


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _root(
    trust_domain: str, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshd bench root CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    uri: str,
    service: str,
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
) -> Leaf:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service)]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, True, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return Leaf(_pem(cert), _key_pem(key))


def generate(datacenter: str = "dc1") -> MeshCerts:
    """A fresh root (``spiffe://<uuid>.consul``) and leaves for web and api
    (``spiffe://<uuid>.consul/ns/default/dc/<dc>/svc/<name>``), shaped like
    the leaves Consul's built-in CA issues."""
    trust_domain = f"{uuid.uuid4()}.consul"
    now = datetime.datetime.now(datetime.UTC)
    root, root_key = _root(trust_domain, now)
    leaves = {
        svc: _leaf(
            f"spiffe://{trust_domain}/ns/default/dc/{datacenter}/svc/{svc}",
            svc,
            root,
            root_key,
            now,
        )
        for svc in ("web", "api")
    }
    return MeshCerts(_pem(root), leaves["web"], leaves["api"], "generated")
