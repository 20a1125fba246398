"""The built-in CA: keys, roots, cross-signing, CSR checks and leaf fields."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connect import ca
from connect.errors import CAError, CSRError
from connect.spiffe import ServiceID

TD = "11111111-2222-3333-4444-555555555555.consul"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WEB = ServiceID(TD, "dc1", "web")


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _root(serial: int = 1, bits: int = 256, ttl: timedelta = 3650 * DAY) -> ca.IssuedRoot:
    return ca.create_root(
        trust_domain=TD, key_type="ec", bits=bits, ttl=ttl, now=NOW, serial=serial
    )


@pytest.fixture(scope="module")
def root() -> ca.IssuedRoot:
    return _root()


@pytest.fixture(scope="module")
def leaf_key() -> str:
    return ca.generate_private_key("ec", 256)


def _sign(
    root: ca.IssuedRoot, csr_pem: str, ttl: timedelta = timedelta(hours=72), serial: int = 0x1234
) -> ca.Leaf:
    return ca.sign_leaf(
        ca.parse_csr(csr_pem),
        signing_cert_pem=root.cert_pem,
        signing_key_pem=root.key_pem,
        ttl=ttl,
        now=NOW,
        serial=serial,
    )


# -- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "curve"),
    [(224, "secp224r1"), (256, "secp256r1"), (384, "secp384r1"), (521, "secp521r1")],
)
def test_generate_ec_key_uses_the_secp_curve_for_bits(bits: int, curve: str) -> None:
    pem = ca.generate_private_key("ec", bits)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == curve


def test_generate_rsa_key_has_requested_size() -> None:
    key = serialization.load_pem_private_key(ca.generate_private_key("rsa", 2048).encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048


@pytest.mark.parametrize(
    ("key_type", "bits", "reason"),
    [
        ("ec", 255, "224, 256, 384 or 521"),
        ("rsa", 1024, "2048..8192"),
        ("rsa", 16384, "2048..8192"),
        ("dsa", 2048, "unsupported"),
    ],
)
def test_generate_rejects_unsupported_key_types_and_sizes(
    key_type: str, bits: int, reason: str
) -> None:
    with pytest.raises(CAError, match=reason):
        ca.generate_private_key(key_type, bits)


def test_key_id_is_colon_hex_sha256_of_the_public_key(leaf_key: str) -> None:
    pub = ca.load_private_key(leaf_key).public_key()
    spki = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = ca.key_id(pub)
    assert kid == ":".join(f"{b:02x}" for b in hashlib.sha256(spki).digest())
    assert len(kid.split(":")) == 32


def test_fingerprint_id_is_colon_hex_sha256_of_der(root: ca.IssuedRoot) -> None:
    der = _cert(root.cert_pem).public_bytes(serialization.Encoding.DER)
    assert ca.fingerprint_id(root.cert_pem) == hashlib.sha256(der).digest().hex(":")
    assert root.id == ca.fingerprint_id(root.cert_pem)


def test_serial_hex_is_consuls_colon_form() -> None:
    assert ca.serial_hex(0x1234) == "12:34"
    assert ca.serial_hex(0xABCDEF) == "ab:cd:ef"
    assert ca.serial_hex(5) == "05"


# -- roots -------------------------------------------------------------------------------------


def test_root_is_a_self_signed_ca_with_spiffe_san_and_key_ids(root: ca.IssuedRoot) -> None:
    cert = _cert(root.cert_pem)
    assert cert.subject == cert.issuer
    assert (
        cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        == "pri-1.ca.11111111.consul"
    )
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and ku.digital_signature and not ku.key_encipherment
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}"]
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert ski == aki
    assert root.signing_key_id == ski.hex(":") == ca.key_id(cert.public_key())
    cert.verify_directly_issued_by(cert)


def test_root_validity_starts_a_minute_early_and_lasts_ttl(root: ca.IssuedRoot) -> None:
    cert = _cert(root.cert_pem)
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=1) == root.not_before
    assert cert.not_valid_after_utc == NOW + 3650 * DAY == root.not_after
    assert (root.serial, root.key_type, root.bits, cert.serial_number) == (1, "ec", 256, 1)


def test_each_root_gets_a_unique_subject() -> None:
    assert _cert(_root(serial=7).cert_pem).subject != _cert(_root(serial=8).cert_pem).subject


def test_root_uses_an_operator_supplied_key_and_reports_its_type() -> None:
    key_pem = ca.generate_private_key("ec", 384)
    issued = ca.create_root(
        trust_domain=TD, key_type="rsa", bits=4096, ttl=DAY, now=NOW, serial=3, key_pem=key_pem
    )
    supplied = ca.load_private_key(key_pem).public_key()
    assert ca.key_id(_cert(issued.cert_pem).public_key()) == ca.key_id(supplied)
    assert (issued.key_type, issued.bits) == ("ec", 384)


@pytest.mark.parametrize(
    ("kwargs", "error", "reason"),
    [
        ({"serial": 0}, CAError, "serial number"),
        ({"serial": 2**159}, CAError, "serial number"),
        ({"ttl": timedelta(0)}, CAError, "ttl must be positive"),
        ({"key_pem": "not a key"}, CAError, "private key cannot be parsed"),
        ({"now": datetime(2026, 5, 1)}, ValueError, "timezone-aware"),
    ],
)
def test_create_root_rejects_bad_inputs(
    kwargs: dict[str, object], error: type[Exception], reason: str
) -> None:
    args: dict[str, object] = {
        "trust_domain": TD,
        "key_type": "ec",
        "bits": 256,
        "ttl": DAY,
        "now": NOW,
        "serial": 1,
    }
    args.update(kwargs)
    with pytest.raises(error, match=reason):
        ca.create_root(**args)  # type: ignore[arg-type]


# -- CSRs --------------------------------------------------------------------------------------


def test_make_csr_round_trips_through_parse_csr(leaf_key: str) -> None:
    info = ca.parse_csr(ca.make_csr(leaf_key, WEB))
    assert info.spiffe == WEB
    assert info.csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web"


def _csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
    sans: Sequence[x509.GeneralName] | None,
    *,
    ca_constraint: bool = False,
) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")])
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca_constraint:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _uri(value: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(value)


def _tampered_signature(pem: str) -> str:
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's S
    csr = x509.load_der_x509_csr(bytes(der))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


P256 = ec.generate_private_key(ec.SECP256R1())
WEB_URI = [_uri(WEB.uri())]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: "x" * (16 * 1024 + 1), "larger than 16 KiB"),
        (lambda: "hello", "not PEM"),
        (
            lambda: (
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            ),
            "cannot be parsed",
        ),
        (lambda: _tampered_signature(_csr(P256, WEB_URI)), "CSR signature invalid"),
        (lambda: _csr(P256, None), "CSR has no SPIFFE URI SAN"),
        (lambda: _csr(P256, [x509.DNSName("web")]), "CSR has no SPIFFE URI SAN"),
        (
            lambda: _csr(P256, [*WEB_URI, _uri(f"spiffe://{TD}/ns/default/dc/dc1/svc/db")]),
            "2 URI SANs",
        ),
        (lambda: _csr(P256, [_uri("https://web.example")]), "not a valid SPIFFE ID"),
        (lambda: _csr(P256, [_uri(f"spiffe://{TD}")]), "not a service SPIFFE ID"),
        (
            lambda: _csr(P256, [_uri(f"spiffe://{TD}/agent/client/dc/dc1/id/n1")]),
            "not a service SPIFFE ID",
        ),
        (lambda: _csr(rsa.generate_private_key(65537, 1024), WEB_URI), "too weak: rsa 1024"),
        (
            lambda: _csr(ec.generate_private_key(ec.SECP224R1()), WEB_URI),
            "too weak: ec curve secp224r1",
        ),
        (lambda: _csr(ed25519.Ed25519PrivateKey.generate(), WEB_URI), "unsupported key type"),
        (lambda: _csr(P256, WEB_URI, ca_constraint=True), "asks for a CA certificate"),
    ],
)
def test_parse_csr_rejects_with_reason(make: object, reason: str) -> None:
    with pytest.raises(CSRError) as excinfo:
        ca.parse_csr(make())  # type: ignore[operator]
    assert reason in str(excinfo.value)


def test_parse_csr_accepts_rsa_2048_and_p384_keys() -> None:
    for key in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP384R1())):
        assert ca.parse_csr(_csr(key, WEB_URI)).spiffe == WEB


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"trust_domain": "y.consul"}, f"trust domain '{TD}' is not this cluster's 'y.consul'"),
        ({"datacenter": "dc2"}, "datacenter 'dc1' is not this server's 'dc2'"),
        ({"service": "db"}, "CSR asks for service 'web' but the caller may only claim 'db'"),
    ],
)
def test_validate_claim_rejects_mismatches(
    leaf_key: str, kwargs: dict[str, str], reason: str
) -> None:
    info = ca.parse_csr(ca.make_csr(leaf_key, WEB))
    args: dict[str, str | None] = {"trust_domain": TD, "datacenter": "dc1", "service": "web"}
    args.update(kwargs)
    with pytest.raises(CSRError) as excinfo:
        ca.validate_claim(info, **args)  # type: ignore[arg-type]
    assert str(excinfo.value) == reason


def test_validate_claim_accepts_matching_claims_and_any_service_when_unrestricted(
    leaf_key: str,
) -> None:
    info = ca.parse_csr(ca.make_csr(leaf_key, WEB))
    refused = []
    for service in ("web", None, "db"):
        try:
            ca.validate_claim(info, trust_domain=TD, datacenter="dc1", service=service)
        except CSRError:
            refused.append(service)
    assert refused == ["db"]


# -- leaves ------------------------------------------------------------------------------------


def test_leaf_has_service_san_eku_key_usage_and_key_ids(root: ca.IssuedRoot, leaf_key: str) -> None:
    leaf = _sign(root, ca.make_csr(leaf_key, WEB))
    cert = _cert(leaf.cert_pem)
    ext = cert.extensions
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web"
    assert cert.issuer == _cert(root.cert_pem).subject
    uris = ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert uris == [WEB.uri()] == [leaf.spiffe_uri]
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert (
        ku.digital_signature
        and ku.key_agreement
        and not ku.key_encipherment
        and not ku.key_cert_sign
    )
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki is not None and aki.hex(":") == root.signing_key_id
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ski.hex(":") == ca.key_id(cert.public_key())
    cert.verify_directly_issued_by(_cert(root.cert_pem))


def test_leaf_serial_and_validity(root: ca.IssuedRoot, leaf_key: str) -> None:
    leaf = _sign(root, ca.make_csr(leaf_key, WEB), ttl=timedelta(hours=72), serial=0xBEEF01)
    cert = _cert(leaf.cert_pem)
    assert cert.serial_number == 0xBEEF01
    assert leaf.serial_hex == "be:ef:01"
    assert leaf.service == "web"
    assert cert.not_valid_before_utc == leaf.not_before == NOW - timedelta(minutes=1)
    assert cert.not_valid_after_utc == leaf.not_after == NOW + timedelta(hours=72)


def test_leaf_never_outlives_its_signer(leaf_key: str) -> None:
    short_root = _root(serial=5, ttl=timedelta(hours=10))
    leaf = _sign(short_root, ca.make_csr(leaf_key, WEB), ttl=timedelta(hours=72))
    assert leaf.not_after == short_root.not_after == NOW + timedelta(hours=10)


def test_rsa_leaf_gets_key_encipherment_not_key_agreement(root: ca.IssuedRoot) -> None:
    leaf = _sign(root, ca.make_csr(ca.generate_private_key("rsa", 2048), WEB))
    ku = _cert(leaf.cert_pem).extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_encipherment and not ku.key_agreement


def test_sign_leaf_refuses_expired_or_mismatched_signers(
    root: ca.IssuedRoot, leaf_key: str
) -> None:
    info = ca.parse_csr(ca.make_csr(leaf_key, WEB))
    with pytest.raises(CAError, match="expired"):
        ca.sign_leaf(
            info,
            signing_cert_pem=root.cert_pem,
            signing_key_pem=root.key_pem,
            ttl=DAY,
            now=NOW + 3651 * DAY,
            serial=1,
        )
    with pytest.raises(CAError, match="does not match"):
        ca.sign_leaf(
            info,
            signing_cert_pem=root.cert_pem,
            signing_key_pem=leaf_key,
            ttl=DAY,
            now=NOW,
            serial=1,
        )


# -- PEM chains --------------------------------------------------------------------------------


def test_pem_chain_joins_and_splits_back(root: ca.IssuedRoot, leaf_key: str) -> None:
    leaf = _sign(root, ca.make_csr(leaf_key, WEB))
    chain = ca.cert_pem_chain(leaf.cert_pem + "\n\n", "", root.cert_pem.replace("\n", "\r\n"))
    assert chain.count("-----BEGIN CERTIFICATE-----") == 2
    assert "\n\n" not in chain and "\r" not in chain and chain.endswith("-----\n")
    assert ca.split_pem_chain(chain) == [leaf.cert_pem, root.cert_pem]
    assert ca.split_pem_chain("no pem here") == []


# -- cross-signing -----------------------------------------------------------------------------


def test_cross_signed_cert_has_new_subject_and_key_issued_by_old() -> None:
    old, new = _root(serial=10, ttl=100 * DAY), _root(serial=11)
    later = NOW + DAY
    cross = _cert(
        ca.cross_sign(
            new_root_cert_pem=new.cert_pem,
            old_root_cert_pem=old.cert_pem,
            old_root_key_pem=old.key_pem,
            now=later,
            serial=12,
        )
    )
    new_cert, old_cert = _cert(new.cert_pem), _cert(old.cert_pem)
    assert cross.subject == new_cert.subject and cross.issuer == old_cert.subject
    assert ca.key_id(cross.public_key()) == new.signing_key_id
    ext = cross.extensions
    assert (
        ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex(":")
        == new.signing_key_id
    )
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki is not None and aki.hex(":") == old.signing_key_id
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value == (
        new_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    )
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cross.not_valid_before_utc == later - timedelta(minutes=1)
    assert cross.not_valid_after_utc == old.not_after  # the earlier expiry
    cross.verify_directly_issued_by(old_cert)


def test_cross_sign_refuses_a_key_that_is_not_the_old_roots() -> None:
    old, new = _root(serial=10), _root(serial=11)
    with pytest.raises(CAError, match="does not match"):
        ca.cross_sign(
            new_root_cert_pem=new.cert_pem,
            old_root_cert_pem=old.cert_pem,
            old_root_key_pem=new.key_pem,
            now=NOW,
            serial=12,
        )


# -- real TLS handshakes across a rotation (OpenSSL via stdlib ssl) ----------------------------


def _handshake(tmp_path: Path, chain_pem: str, key_pem: str, trusted: list[str]) -> str:
    """Serve ``chain_pem`` on loopback; a client trusting only ``trusted``
    connects. Returns the URI SAN the client verified, or raises."""
    (tmp_path / "chain.pem").write_text(chain_pem)
    (tmp_path / "key.pem").write_text(key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False  # identity is the SPIFFE URI, checked below
    client_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx.load_verify_locations(cadata=ca.cert_pem_chain(*trusted))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)

        def serve() -> None:
            conn, _ = listener.accept()
            conn.settimeout(5)
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=5) as raw,
                client_ctx.wrap_socket(raw) as tls,
            ):
                peer = tls.getpeercert()
                tls.sendall(b"x")
        finally:
            thread.join(5)
    sans = peer.get("subjectAltName", ()) if peer else ()
    return next(str(entry[1]) for entry in sans if entry[0] == "URI")


@pytest.fixture(scope="module")
def rotated() -> tuple[ca.IssuedRoot, ca.IssuedRoot, str, ca.Leaf, str]:
    # OpenSSL checks validity against the wall clock, so this fixture (and
    # only it) issues at the real time.
    now = datetime.now(UTC)
    old, new = (
        ca.create_root(trust_domain=TD, key_type="ec", bits=256, ttl=DAY, now=now, serial=s)
        for s in (20, 21)
    )
    cross = ca.cross_sign(
        new_root_cert_pem=new.cert_pem,
        old_root_cert_pem=old.cert_pem,
        old_root_key_pem=old.key_pem,
        now=now,
        serial=22,
    )
    key = ca.generate_private_key("ec", 256)
    leaf = ca.sign_leaf(
        ca.parse_csr(ca.make_csr(key, WEB)),
        signing_cert_pem=new.cert_pem,
        signing_key_pem=new.key_pem,
        ttl=timedelta(hours=1),
        now=now,
        serial=23,
    )
    return old, new, cross, leaf, key


@pytest.mark.e2e
def test_new_leaf_with_cross_cert_verifies_for_old_root_only_peer(
    tmp_path: Path, rotated: tuple[ca.IssuedRoot, ca.IssuedRoot, str, ca.Leaf, str]
) -> None:
    old, _new, cross, leaf, key = rotated
    chain = ca.cert_pem_chain(leaf.cert_pem, cross)
    assert _handshake(tmp_path, chain, key, [old.cert_pem]) == WEB.uri()


@pytest.mark.e2e
def test_new_leaf_with_cross_cert_verifies_for_new_root_only_peer(
    tmp_path: Path, rotated: tuple[ca.IssuedRoot, ca.IssuedRoot, str, ca.Leaf, str]
) -> None:
    _old, new, cross, leaf, key = rotated
    chain = ca.cert_pem_chain(leaf.cert_pem, cross)
    assert _handshake(tmp_path, chain, key, [new.cert_pem]) == WEB.uri()


@pytest.mark.e2e
def test_new_leaf_without_cross_cert_fails_for_old_root_only_peer(
    tmp_path: Path, rotated: tuple[ca.IssuedRoot, ca.IssuedRoot, str, ca.Leaf, str]
) -> None:
    old, _new, _cross, leaf, key = rotated
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path, leaf.cert_pem, key, [old.cert_pem])
