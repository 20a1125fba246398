"""meshd.agent_tls (CA and certificates) and raft.tls (ssl contexts)."""

from __future__ import annotations

import datetime
import functools
import os
import ssl
import stat
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshd.agent_tls import create_ca, create_cert, write_pem
from raft.tls import (
    TLSConfigError,
    TLSMaterial,
    client_context,
    client_context_from_pem,
    peer_dns_names,
    server_context,
    server_context_from_pem,
)


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


@pytest.fixture(scope="module")
def ca() -> tuple[str, str]:
    return create_ca()


def test_ca_is_p256_ca_with_cert_sign_usage_and_ski(ca: tuple[str, str]) -> None:
    cert = _cert(ca[0])
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert bc.critical and bc.value.ca
    assert ku.key_cert_sign and ku.crl_sign
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert cert.subject == cert.issuer
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert str(cn).startswith("Consul Agent CA ")
    assert "BEGIN EC PRIVATE KEY" in ca[1]


def test_ca_validity_follows_days_and_injected_clock() -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    cert = _cert(create_ca(days=10, common_name="test CA", now=now)[0])
    assert cert.not_valid_after_utc == now + datetime.timedelta(days=10)
    assert cert.not_valid_before_utc < now


def test_server_cert_names_server_dc_domain_localhost_and_given_ips(ca: tuple[str, str]) -> None:
    pem, _ = create_cert(
        *ca, kind="server", dc="east", domain="mesh", ips=["10.0.0.5"], dns_names=["n1.lan"]
    )
    cert = _cert(pem)
    dns, ips = _sans(cert)
    assert dns == ["server.east.mesh", "localhost", "n1.lan"]
    assert ips == ["127.0.0.1", "10.0.0.5"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == _cert(ca[0]).subject


def test_client_cert_names_client_dc_domain_and_has_both_ekus(ca: tuple[str, str]) -> None:
    cert = _cert(create_cert(*ca, kind="client")[0])
    dns, ips = _sans(cert)
    assert dns == ["client.dc1.consul", "localhost"]
    assert ips == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_cert_expiry_is_capped_at_the_ca_expiry() -> None:
    short_ca = create_ca(days=5)
    cert = _cert(create_cert(*short_ca, kind="server", days=365)[0])
    assert cert.not_valid_after_utc == _cert(short_ca[0]).not_valid_after_utc


def test_create_cert_refuses_bad_input(ca: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="ips"):
        create_cert(*ca, kind="server", ips=["not-an-ip"])
    with pytest.raises(ValueError, match="dc"):
        create_cert(*ca, kind="server", dc="bad dc")
    other = create_ca()
    with pytest.raises(ValueError, match="does not match"):
        create_cert(ca[0], other[1], kind="server")
    leaf = create_cert(*ca, kind="server")
    with pytest.raises(ValueError, match="not a CA"):
        create_cert(*leaf, kind="server")


def test_name_constrained_ca_signs_names_under_its_domain(ca: tuple[str, str]) -> None:
    constrained = create_ca(domain="consul", name_constraint=True)
    nc = _cert(constrained[0]).extensions.get_extension_for_class(x509.NameConstraints).value
    assert nc.permitted_subtrees == [x509.DNSName("consul"), x509.DNSName("localhost")]


def test_write_pem_private_file_is_0600_and_public_0644(tmp_path: Path) -> None:
    cert_pem, key_pem = create_ca()
    key_path, cert_path = tmp_path / "ca-key.pem", tmp_path / "ca.pem"
    key_path.write_text("old")
    key_path.chmod(0o644)
    write_pem(key_path, key_pem, private=True)
    write_pem(cert_path, cert_pem)
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cert_path).st_mode) == 0o644
    assert key_path.read_text() == key_pem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca-key.pem", "ca.pem"]


def test_write_pem_into_missing_directory_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_pem(tmp_path / "nope" / "k.pem", "x", private=True)


def _files(tmp_path: Path, ca: tuple[str, str], kind: str) -> tuple[Path, Path, Path]:
    cert, key = create_cert(*ca, kind="server" if kind == "server" else "client")
    paths = (tmp_path / "ca.pem", tmp_path / f"{kind}.pem", tmp_path / f"{kind}-key.pem")
    write_pem(paths[0], ca[0])
    write_pem(paths[1], cert)
    write_pem(paths[2], key, private=True)
    return paths


def test_contexts_require_tls13_and_peer_certificates(tmp_path: Path, ca: tuple[str, str]) -> None:
    srv = server_context(*_files(tmp_path, ca, "server"))
    cli = client_context(*_files(tmp_path, ca, "client"))
    for ctx in (srv, cli):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert cli.check_hostname
    assert len(srv.get_ca_certs()) == 1


def test_missing_file_raises_tls_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match=r"missing\.pem"):
        server_context(tmp_path / "missing.pem", tmp_path / "c.pem", tmp_path / "k.pem")


def test_pem_material_repr_hides_key_and_bad_pem_raises(ca: tuple[str, str]) -> None:
    material = TLSMaterial(ca[0], *create_cert(*ca, kind="server"))
    assert "PRIVATE" not in repr(material)
    with pytest.raises(TLSConfigError):
        client_context_from_pem(TLSMaterial(ca[0], "garbage", "garbage"))


@pytest.mark.e2e
async def test_pem_contexts_handshake_and_expose_peer_dns_names(ca: tuple[str, str]) -> None:
    server = server_context_from_pem(TLSMaterial(ca[0], *create_cert(*ca, kind="server")))
    client = client_context_from_pem(TLSMaterial(ca[0], *create_cert(*ca, kind="client")))
    seen: list[list[str]] = []

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        await stream.do_handshake()
        seen.append(peer_dns_names(stream))
        await stream.send_all(b"hi")
        await stream.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_ssl_over_tcp, host="127.0.0.1")
            listeners = await nursery.start(serve, handler, 0, server)
            port = listeners[0].transport_listener.socket.getsockname()[1]
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            stream = trio.SSLStream(tcp, client, server_hostname="server.dc1.consul")
            assert await stream.receive_some() == b"hi"
            assert peer_dns_names(stream) == ["server.dc1.consul", "localhost"]
            nursery.cancel_scope.cancel()
    assert seen == [["client.dc1.consul", "localhost"]]
