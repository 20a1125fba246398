"""The built-in CA: keys, roots, cross-signing, CSRs and leaf certificates.

Pure functions over PEM strings: no I/O, no clock (every function that
stamps a validity period takes ``now``, a timezone-aware datetime) and no
randomness except key generation (serial numbers are parameters; callers pass
a random positive integer below 2**159).

Certificates follow Consul's built-in provider (agent/connect/ca/
provider_consul.go, agent/connect/generate.go):

- key IDs are the SHA-256 of the DER SubjectPublicKeyInfo, written as
  colon-separated lowercase hex (``connect.KeyId``/``HexString``);
- root IDs are the colon-hex SHA-256 of the root's DER
  (``connect.CalculateCertFingerprint``);
- leaves carry one SPIFFE URI SAN, serverAuth+clientAuth, and are valid from
  a minute before ``now`` to tolerate clock skew between agents.

A root rotation is made safe by cross-signing
(https://developer.hashicorp.com/consul/docs/connect/ca#root-certificate-rotation):
the new root's subject and key, issued by the old root, so a leaf signed by
the new root and presented with that certificate verifies for peers that
trust only the old root.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from .errors import CAError, CSRError, SpiffeError
from .spiffe import ServiceID, SigningID, parse_spiffe_id

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

EC_CURVES: dict[int, type[ec.EllipticCurve]] = {
    224: ec.SECP224R1,
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
# Curves a leaf key may use (P-224 is too weak for new leaves).
CSR_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
MAX_CSR_BYTES = 16 * 1024
MAX_SERIAL = 2**159 - 1  # RFC 5280 4.1.2.2: at most 20 octets, positive
CLOCK_SKEW = timedelta(minutes=1)
_CN_MAX = 64  # RFC 5280 ub-common-name
_CSR_BEGIN = "-----BEGIN CERTIFICATE REQUEST-----"
_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


# -- keys and identifiers ----------------------------------------------------------------------


def generate_private_key(key_type: str, bits: int) -> str:
    """A new private key as PKCS#8 PEM.

    ``key_type`` "ec" takes ``bits`` 224/256/384/521 (the SECP curves);
    "rsa" takes 2048..8192 in multiples of 8. Raises ``CAError`` otherwise.
    """
    key: PrivateKey
    if key_type == "ec":
        curve = EC_CURVES.get(bits)
        if curve is None:
            raise CAError(f"ec keys must be 224, 256, 384 or 521 bits, not {bits}")
        key = ec.generate_private_key(curve())
    elif key_type == "rsa":
        if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS or bits % 8:
            raise CAError(f"rsa keys must be {RSA_MIN_BITS}..{RSA_MAX_BITS} bits, not {bits}")
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        raise CAError(f"unsupported private key type {key_type!r} (want 'ec' or 'rsa')")
    return _key_pem(key)


def _key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_private_key(key_pem: str) -> PrivateKey:
    """Parse an unencrypted EC or RSA private key (PKCS#8, SEC1 or PKCS#1 PEM).

    Raises ``CAError`` if it cannot be parsed or is another kind of key.
    """
    try:
        key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise CAError(f"private key cannot be parsed: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CAError(f"unsupported private key type {type(key).__name__} (want EC or RSA)")
    return key


def key_type_and_bits(key: PrivateKey | CertificatePublicKeyTypes) -> tuple[str, int]:
    """``("ec", 256)``, ``("rsa", 2048)``... for a key; ``CAError`` for others."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "rsa", key.key_size
    raise CAError(f"unsupported key type {type(key).__name__} (want EC or RSA)")


def colon_hex(data: bytes) -> str:
    """``b"\\x9a\\x3f"`` -> ``"9a:3f"`` (Consul's ``connect.HexString``)."""
    return data.hex(":")


def _spki_der(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _ski_bytes(public_key: CertificatePublicKeyTypes) -> bytes:
    return hashlib.sha256(_spki_der(public_key)).digest()


def key_id(public_key: CertificatePublicKeyTypes) -> str:
    """The colon-hex SubjectKeyIdentifier meshd writes for ``public_key``
    (SHA-256 of its DER SubjectPublicKeyInfo, as Consul's ``connect.KeyId``)."""
    return colon_hex(_ski_bytes(public_key))


def serial_hex(serial: int) -> str:
    """A serial number in Consul's ``SerialNumber`` form (colon-hex of its bytes)."""
    return colon_hex(serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big"))


def load_cert(cert_pem: str) -> x509.Certificate:
    """Parse one PEM certificate; ``CAError`` if it is not one."""
    try:
        return x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CAError(f"certificate cannot be parsed: {exc}") from None


def fingerprint_id(cert_pem: str) -> str:
    """Colon-hex SHA-256 of the certificate's DER: the ID of a CA root."""
    der = load_cert(cert_pem).public_bytes(serialization.Encoding.DER)
    return colon_hex(hashlib.sha256(der).digest())


def cert_to_pem(cert: x509.Certificate) -> str:
    """A certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _cert_ski(cert: x509.Certificate) -> bytes:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return _ski_bytes(cert.public_key())
    return ext.value.digest


# -- time and serial checks --------------------------------------------------------------------


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def _check_serial(serial: int) -> int:
    if not 0 < serial <= MAX_SERIAL:
        raise CAError(f"serial number must be in 1..2**159-1, not {serial}")
    return serial


def _check_ttl(ttl: timedelta) -> timedelta:
    if ttl <= timedelta(0):
        raise CAError(f"ttl must be positive, not {ttl}")
    return ttl


def _cn(value: str) -> x509.NameAttribute[str]:
    # The identity lives in the URI SAN; the CN is informative and capped at 64.
    return x509.NameAttribute(NameOID.COMMON_NAME, value[:_CN_MAX] or "-")


# -- roots -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedRoot:
    """A self-signed root CA and its private key (``key_pem``: keep it secret)."""

    id: str
    name: str
    serial: int
    cert_pem: str
    key_pem: str
    signing_key_id: str
    not_before: datetime
    not_after: datetime
    key_type: str
    bits: int


def key_usage(
    *, cert_sign: bool = False, key_encipherment: bool = False, key_agreement: bool = False
) -> x509.KeyUsage:
    """digitalSignature, plus keyCertSign and cRLSign with ``cert_sign`` (CAs),
    keyEncipherment (RSA leaves) or keyAgreement (EC leaves) when asked. The one
    place key usages are written, for Connect's CA and the agent's RPC certificates
    (meshd/agent_tls.py)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    *,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    ski: bytes,
    aki: bytes,
) -> x509.CertificateBuilder:
    """Subject/issuer, validity and the CA extensions shared by roots, cross-certs
    and the agent CA (meshd/agent_tls.py). Raises ``CAError`` for an empty validity."""
    if not_after <= not_before:
        raise CAError(f"validity ends ({not_after}) before it starts ({not_before})")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # path_length None: cross-signed roots must be able to sit below this one.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(ski), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(
                aki, authority_cert_issuer=None, authority_cert_serial_number=None
            ),
            critical=False,
        )
    )


def create_root(
    *,
    trust_domain: str,
    key_type: str,
    bits: int,
    ttl: timedelta,
    now: datetime,
    serial: int,
    key_pem: str | None = None,
) -> IssuedRoot:
    """A new self-signed root CA for ``trust_domain`` valid from ``now`` - 1 min
    to ``now`` + ``ttl``.

    With ``key_pem`` (an operator-supplied key) that key is used and
    ``key_type``/``bits`` are taken from it, as Consul does for
    ``PrivateKey``; otherwise a new ``key_type``/``bits`` key is generated.
    The subject is unique per root (``pri-<serial hex>.ca.<td[:8]>.consul``)
    so chains never confuse two roots. Raises ``CAError`` for a bad key,
    serial or ttl.
    """
    now = _utc(now)
    _check_serial(serial)
    _check_ttl(ttl)
    if key_pem is None:
        key_pem = generate_private_key(key_type, bits)
    key = load_private_key(key_pem)
    actual_type, actual_bits = key_type_and_bits(key)
    ski = _ski_bytes(key.public_key())
    subject = x509.Name([_cn(f"pri-{serial:x}.ca.{trust_domain[:8]}.consul"), _org()])
    builder = ca_builder(
        subject,
        subject,
        key.public_key(),
        serial=serial,
        not_before=now - CLOCK_SKEW,
        not_after=now + ttl,
        ski=ski,
        aki=ski,
    ).add_extension(
        x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(SigningID(trust_domain).uri())]
        ),
        critical=False,
    )
    cert = builder.sign(key, hashes.SHA256())
    cert_pem = cert_to_pem(cert)
    return IssuedRoot(
        id=colon_hex(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()),
        name="meshd CA Primary Cert",
        serial=serial,
        cert_pem=cert_pem,
        key_pem=_key_pem(key),
        signing_key_id=colon_hex(ski),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=actual_type,
        bits=actual_bits,
    )


def _org() -> x509.NameAttribute[str]:
    return x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshd")


def cross_sign(
    *,
    new_root_cert_pem: str,
    old_root_cert_pem: str,
    old_root_key_pem: str,
    now: datetime,
    serial: int,
) -> str:
    """The new root re-issued by the old root, as PEM.

    Same subject, public key, SubjectKeyIdentifier and SANs as the new root;
    issuer and AuthorityKeyIdentifier of the old root; valid from ``now`` -
    1 min to the earlier of the two roots' expiry. A leaf signed by the new
    root, presented with this certificate, verifies against the old root
    alone. Raises ``CAError`` if the old key does not match the old root or
    the validity would be empty.
    """
    now = _utc(now)
    _check_serial(serial)
    new = load_cert(new_root_cert_pem)
    old = load_cert(old_root_cert_pem)
    old_key = load_private_key(old_root_key_pem)
    if _spki_der(old_key.public_key()) != _spki_der(old.public_key()):
        raise CAError("the old root's private key does not match its certificate")
    builder = ca_builder(
        new.subject,
        old.subject,
        new.public_key(),
        serial=serial,
        not_before=now - CLOCK_SKEW,
        not_after=min(new.not_valid_after_utc, old.not_valid_after_utc),
        ski=_cert_ski(new),
        aki=_cert_ski(old),
    )
    try:
        san = new.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        builder = builder.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    return cert_to_pem(builder.sign(old_key, hashes.SHA256()))


# -- CSRs --------------------------------------------------------------------------------------


def make_csr(key_pem: str, spiffe: ServiceID) -> str:
    """A PEM CSR for ``spiffe`` signed by ``key_pem`` (subject CN = service)."""
    key = load_private_key(key_pem)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([_cn(spiffe.service)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe.uri())]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True, slots=True)
class CSRInfo:
    """A parsed, well-formed CSR and the service identity it asks for."""

    spiffe: ServiceID
    csr: x509.CertificateSigningRequest


def _check_csr_key(csr: x509.CertificateSigningRequest) -> None:
    try:
        pub = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CSRError(f"CSR has an unsupported key: {exc}") from None
    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size < RSA_MIN_BITS:
            raise CSRError(f"CSR key too weak: rsa {pub.key_size} bits (minimum {RSA_MIN_BITS})")
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name not in CSR_CURVES:
            raise CSRError(f"CSR key too weak: ec curve {pub.curve.name} (want P-256/P-384/P-521)")
    else:
        raise CSRError(f"CSR has an unsupported key type {type(pub).__name__} (want EC or RSA)")


def _load_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CSRError(f"CSR is larger than {MAX_CSR_BYTES // 1024} KiB")
    if _CSR_BEGIN not in csr_pem:
        raise CSRError(f"CSR is not PEM (want a {_CSR_BEGIN} block)")
    try:
        return x509.load_pem_x509_csr(csr_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CSRError(f"CSR cannot be parsed: {exc}") from None


def _csr_service_id(csr: x509.CertificateSigningRequest) -> ServiceID:
    try:
        exts = csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CSRError(f"CSR extensions cannot be parsed: {exc}") from None
    try:
        bc = exts.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        pass
    else:
        if bc.value.ca:
            raise CSRError("CSR asks for a CA certificate (basicConstraints CA=true)")
    try:
        san = exts.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise CSRError("CSR has no SPIFFE URI SAN") from None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise CSRError("CSR has no SPIFFE URI SAN")
    if len(uris) > 1:
        raise CSRError(f"CSR has {len(uris)} URI SANs, want exactly one")
    try:
        parsed = parse_spiffe_id(uris[0])
    except SpiffeError as exc:
        raise CSRError(f"CSR URI SAN is not a valid SPIFFE ID: {exc}") from None
    if not isinstance(parsed, ServiceID):
        raise CSRError(f"CSR URI SAN {uris[0]!r} is not a service SPIFFE ID")
    return parsed


def parse_csr(csr_pem: str) -> CSRInfo:
    """Parse and check a PEM CSR for a leaf certificate.

    Raises ``CSRError`` if it is over 16 KiB, not PEM, unparseable, has a
    weak or unsupported key (rsa < 2048 bits, ec other than P-256/384/521),
    a bad signature, asks for a CA certificate, or has no (or several) URI
    SANs or one that is not a service SPIFFE ID. Does not check who may
    claim that identity: see ``validate_claim``.
    """
    csr = _load_csr(csr_pem)
    _check_csr_key(csr)
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CSRError(f"CSR signature cannot be checked: {exc}") from None
    if not valid:
        raise CSRError("CSR signature invalid")
    return CSRInfo(spiffe=_csr_service_id(csr), csr=csr)


def validate_claim(
    info: CSRInfo, *, trust_domain: str, datacenter: str, service: str | None
) -> None:
    """Check the CSR's identity belongs to this cluster and datacenter and,
    when ``service`` is given (the service the caller's token may write),
    that it asks for that service. Raises ``CSRError`` naming the mismatch."""
    sid = info.spiffe
    if sid.trust_domain != trust_domain:
        raise CSRError(f"trust domain {sid.trust_domain!r} is not this cluster's {trust_domain!r}")
    if sid.datacenter != datacenter:
        raise CSRError(f"datacenter {sid.datacenter!r} is not this server's {datacenter!r}")
    if service is not None and sid.service != service:
        raise CSRError(
            f"CSR asks for service {sid.service!r} but the caller may only claim {service!r}"
        )


# -- leaves ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leaf:
    """A signed leaf certificate and the fields Consul's ``IssuedCert`` reports."""

    cert_pem: str
    serial_hex: str
    service: str
    spiffe_uri: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True)
class _Signer:
    cert: x509.Certificate
    key: PrivateKey
    ski: bytes


@lru_cache(maxsize=16)
def _load_signer(cert_pem: str, key_pem: str) -> _Signer:
    # Cached: parsing the key (an RSA key above all) costs more than signing.
    cert = load_cert(cert_pem)
    key = load_private_key(key_pem)
    if _spki_der(key.public_key()) != _spki_der(cert.public_key()):
        raise CAError("the signing key does not match the signing certificate")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = x509.BasicConstraints(ca=False, path_length=None)
    if not bc.ca:
        raise CAError("the signing certificate is not a CA certificate")
    return _Signer(cert=cert, key=key, ski=_cert_ski(cert))


def _leaf_key_usage(public_key: CertificatePublicKeyTypes) -> x509.KeyUsage:
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    return key_usage(key_encipherment=is_rsa, key_agreement=not is_rsa)


def end_entity_extensions(
    builder: x509.CertificateBuilder,
    public_key: CertificatePublicKeyTypes,
    *,
    key_usage: x509.KeyUsage,
    ski: bytes,
    aki: bytes,
    san: list[x509.GeneralName],
) -> x509.CertificateBuilder:
    """The key and the extensions every end-entity certificate carries: CA=false,
    ``key_usage``, serverAuth+clientAuth, SKI/AKI and the ``san`` names. Shared
    by Connect leaves and the agent's RPC certificates (meshd/agent_tls.py)."""
    return (
        builder.public_key(public_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier(ski), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(
                aki, authority_cert_issuer=None, authority_cert_serial_number=None
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
    )


def _leaf_extensions(
    builder: x509.CertificateBuilder,
    public_key: CertificatePublicKeyTypes,
    signer_ski: bytes,
    uri: str,
) -> x509.CertificateBuilder:
    """The leaf's key and the extensions every leaf carries."""
    return end_entity_extensions(
        builder,
        public_key,
        key_usage=_leaf_key_usage(public_key),
        ski=_ski_bytes(public_key),
        aki=signer_ski,
        san=[x509.UniformResourceIdentifier(uri)],
    )


def sign_leaf(
    info: CSRInfo,
    *,
    signing_cert_pem: str,
    signing_key_pem: str,
    ttl: timedelta,
    now: datetime,
    serial: int,
) -> Leaf:
    """Sign a leaf for a parsed (and ``validate_claim``-ed) CSR.

    Subject CN = service, the CSR's URI SAN (canonical form), CA=false,
    serverAuth+clientAuth, valid from ``now`` - 1 min to ``now`` + ``ttl``
    but never past the signer's expiry. Raises ``CAError`` if the signer's
    key and certificate do not match, it is not a CA, it has expired, or the
    serial/ttl is out of range.
    """
    now = _utc(now)
    _check_serial(serial)
    _check_ttl(ttl)
    signer = _load_signer(signing_cert_pem, signing_key_pem)
    signer_expiry = signer.cert.not_valid_after_utc
    if signer_expiry <= now:
        raise CAError(f"the signing certificate expired at {signer_expiry.isoformat()}")
    uri = info.spiffe.uri()
    cert = (
        _leaf_extensions(x509.CertificateBuilder(), info.csr.public_key(), signer.ski, uri)
        .subject_name(x509.Name([_cn(info.spiffe.service)]))
        .issuer_name(signer.cert.subject)
        .serial_number(serial)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + ttl, signer_expiry))
        .sign(signer.key, hashes.SHA256())
    )
    return Leaf(
        cert_pem=cert_to_pem(cert),
        serial_hex=serial_hex(serial),
        service=info.spiffe.service,
        spiffe_uri=uri,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


# -- PEM chains --------------------------------------------------------------------------------


def split_pem_chain(text: str) -> list[str]:
    """Every PEM block in ``text``, in order, each ending in one newline."""
    return [m.group(0) + "\n" for m in _PEM_RE.finditer(text.replace("\r\n", "\n"))]


def cert_pem_chain(*pems: str) -> str:
    """Join PEM blocks (or chains) into one chain: blocks separated by a
    newline, ending with one, empty inputs skipped."""
    blocks = [p.replace("\r\n", "\n").strip() for p in pems]
    joined = "\n".join(b for b in blocks if b)
    return joined + "\n" if joined else ""
