"""SPIFFE checks on peer certificates (pure, on getpeercert() dicts)."""

from __future__ import annotations

import pytest

from connect.proxy.errors import PeerIdentityError
from connect.proxy.identity import check_server, parse_service_uri, peer_serial, peer_service

TD = "11111111-2222-3333-4444-555555555555.consul"


def _cert(*uris: str) -> dict[str, object]:
    return {"subjectAltName": tuple(("URI", u) for u in uris), "serialNumber": "0A1B2C"}


def test_service_id_is_parsed() -> None:
    sid = parse_service_uri(f"spiffe://{TD}/ns/default/dc/dc1/svc/web")
    assert (sid.trust_domain, sid.datacenter, sid.service) == (TD, "dc1", "web")
    assert sid.uri() == f"spiffe://{TD}/ns/default/dc/dc1/svc/web"
    assert parse_service_uri(f"spiffe://{TD}/ap/default/ns/default/dc/dc1/svc/web").service == "web"


@pytest.mark.parametrize(
    "uri",
    [
        f"spiffe://{TD}",
        f"spiffe://{TD}/agent/client/dc/dc1/id/node",
        f"spiffe://{TD}/ns/default/dc/dc1/svc/we%2Fb",
        f"spiffe://{TD}/ns/default/dc/dc1/svc/..",
        f"https://{TD}/ns/default/dc/dc1/svc/web",
        f"spiffe://{TD.upper()}/ns/default/dc/dc1/svc/web",
    ],
)
def test_other_ids_are_refused(uri: str) -> None:
    with pytest.raises(PeerIdentityError):
        parse_service_uri(uri)


def test_peer_must_be_in_our_trust_domain_with_one_uri() -> None:
    assert peer_service(_cert(f"spiffe://{TD}/ns/default/dc/dc2/svc/web"), TD).service == "web"
    with pytest.raises(PeerIdentityError, match="trust domain"):
        peer_service(_cert("spiffe://other.consul/ns/default/dc/dc1/svc/web"), TD)
    with pytest.raises(PeerIdentityError, match="2 URI SANs"):
        peer_service(
            _cert(
                f"spiffe://{TD}/ns/default/dc/dc1/svc/a", f"spiffe://{TD}/ns/default/dc/dc1/svc/b"
            ),
            TD,
        )
    with pytest.raises(PeerIdentityError, match="no certificate"):
        peer_service({}, TD)


def test_server_must_be_the_destination() -> None:
    cert = _cert(f"spiffe://{TD}/ns/default/dc/dc1/svc/web")
    assert check_server(cert, trust_domain=TD, destination="web").service == "web"
    with pytest.raises(PeerIdentityError, match="expected service 'api'"):
        check_server(cert, trust_domain=TD, destination="api")


def test_serial_is_colon_hex() -> None:
    assert peer_serial(_cert()) == "0a:1b:2c"
    assert peer_serial({"serialNumber": "ABC"}) == "0a:bc"
