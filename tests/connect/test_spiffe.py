"""SPIFFE ID rendering, parsing and extraction from certificates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connect import ca
from connect.errors import SpiffeError
from connect.spiffe import (
    AgentID,
    ServiceID,
    SigningID,
    parse_spiffe_id,
    service_id_from_cert,
    trust_domain_for,
)

TD = "11111111-2222-3333-4444-555555555555.consul"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_service_id_renders_consuls_uri_form() -> None:
    sid = ServiceID(trust_domain=TD, datacenter="dc1", service="web")
    assert sid.uri() == f"spiffe://{TD}/ns/default/dc/dc1/svc/web"


def test_signing_and_agent_ids_render_consuls_uri_forms() -> None:
    assert SigningID(TD).uri() == f"spiffe://{TD}"
    assert AgentID(TD, "dc1", "node-1").uri() == f"spiffe://{TD}/agent/client/dc/dc1/id/node-1"


def test_trust_domain_for_appends_consul_and_lowercases() -> None:
    assert trust_domain_for("ABC-123") == "abc-123.consul"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (f"spiffe://{TD}", SigningID(TD)),
        (f"spiffe://{TD}/ns/default/dc/dc1/svc/web", ServiceID(TD, "dc1", "web")),
        (f"spiffe://{TD}/ns/team-a/dc/dc2/svc/api.v2", ServiceID(TD, "dc2", "api.v2", "team-a")),
        (f"spiffe://{TD}/ap/default/ns/default/dc/dc1/svc/web", ServiceID(TD, "dc1", "web")),
        (f"SPIFFE://{TD}/ns/default/dc/dc1/svc/web", ServiceID(TD, "dc1", "web")),
        (f"spiffe://{TD}/ns/default/dc/dc1/svc/my%2Dsvc", ServiceID(TD, "dc1", "my-svc")),
        (f"spiffe://{TD}/agent/client/dc/dc1/id/node_7", AgentID(TD, "dc1", "node_7")),
    ],
)
def test_parse_accepts_consul_shapes(uri: str, expected: object) -> None:
    assert parse_spiffe_id(uri) == expected


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        (f"https://{TD}/ns/default/dc/dc1/svc/web", "scheme must be spiffe"),
        ("spiffe:/x.consul", "scheme must be spiffe"),
        ("spiffe:///ns/default/dc/dc1/svc/web", "empty trust domain"),
        ("spiffe://", "empty trust domain"),
        ("spiffe://Upper.consul", "must be lowercase"),
        ("spiffe://bad!domain.consul", "outside [a-z0-9._-]"),
        ("spiffe://x.consul:8443/ns/default/dc/dc1/svc/web", "port"),
        ("spiffe://user@x.consul", "userinfo"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/web?x=1", "query or fragment"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/web#f", "query or fragment"),
        ("spiffe://x.consul/", "may not end with '/'"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/web/", "empty segment"),
        ("spiffe://x.consul/ns//dc/dc1/svc/web", "empty segment"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/..", "'.' or '..'"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/a%2Fb", "outside [A-Za-z0-9._-]"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/a%zz", "malformed percent-escape"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/%ff", "not UTF-8"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/w eb", "space"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/wéb", "non-ASCII"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/a*b", "outside [A-Za-z0-9._-]"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/a\\b", "bad characters"),
        ("spiffe://x.consul/ns/default/dc/dc1", "not a service, agent or signing ID"),
        ("spiffe://x.consul/svc/web", "not a service, agent or signing ID"),
        ("spiffe://x.consul/ap/team/ns/default/dc/dc1/svc/web", "admin partition 'team'"),
        ("spiffe://x.consul/ns/default/dc/dc1/svc/" + "a" * 2100, "longer than 2048 bytes"),
        ("spiffe://" + "a" * 256, "longer than 255"),
    ],
)
def test_parse_rejects_with_reason(uri: str, reason: str) -> None:
    with pytest.raises(SpiffeError) as excinfo:
        parse_spiffe_id(uri)
    assert reason in str(excinfo.value)


def test_spiffe_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="scheme"):
        parse_spiffe_id("http://x")


def test_uri_round_trips_through_parse() -> None:
    for sid in (ServiceID(TD, "dc-9", "a.b_c-d", "ns1"), SigningID(TD), AgentID(TD, "dc1", "n")):
        assert parse_spiffe_id(sid.uri()) == sid


def _leaf(service: str = "web") -> x509.Certificate:
    root = ca.create_root(
        trust_domain=TD, key_type="ec", bits=256, ttl=timedelta(days=1), now=NOW, serial=1
    )
    key = ca.generate_private_key("ec", 256)
    info = ca.parse_csr(ca.make_csr(key, ServiceID(TD, "dc1", service)))
    leaf = ca.sign_leaf(
        info,
        signing_cert_pem=root.cert_pem,
        signing_key_pem=root.key_pem,
        ttl=timedelta(hours=1),
        now=NOW,
        serial=99,
    )
    return x509.load_pem_x509_certificate(leaf.cert_pem.encode())


def _self_signed(sans: list[x509.GeneralName] | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_service_id_from_cert_reads_the_uri_san_from_object_or_der() -> None:
    cert = _leaf("billing")
    der = cert.public_bytes(serialization.Encoding.DER)
    assert service_id_from_cert(cert) == ServiceID(TD, "dc1", "billing")
    assert service_id_from_cert(der) == ServiceID(TD, "dc1", "billing")
    assert service_id_from_cert(der) is service_id_from_cert(der)  # cached by DER


@pytest.mark.parametrize(
    ("sans", "reason"),
    [
        (None, "no subjectAltName"),
        ([x509.DNSName("web.example")], "0 URI SANs"),
        (
            [
                x509.UniformResourceIdentifier(f"spiffe://{TD}/ns/default/dc/dc1/svc/a"),
                x509.UniformResourceIdentifier(f"spiffe://{TD}/ns/default/dc/dc1/svc/b"),
            ],
            "2 URI SANs",
        ),
        ([x509.UniformResourceIdentifier(f"spiffe://{TD}")], "not a service ID"),
        ([x509.UniformResourceIdentifier("https://example.com/")], "scheme must be spiffe"),
    ],
)
def test_service_id_from_cert_rejects_certs_without_one_service_id(
    sans: list[x509.GeneralName] | None, reason: str
) -> None:
    with pytest.raises(SpiffeError, match=reason):
        service_id_from_cert(_self_signed(sans))


def test_service_id_from_cert_rejects_garbage_der() -> None:
    with pytest.raises(SpiffeError, match="cannot be parsed"):
        service_id_from_cert(b"\x30\x03junk")
