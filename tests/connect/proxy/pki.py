"""A throwaway CA for the proxy tests, built with connect.ca."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connect.ca import create_root, generate_private_key, make_csr, parse_csr, sign_leaf
from connect.spiffe import ServiceID

TRUST_DOMAIN = "11111111-2222-3333-4444-555555555555.consul"
_serials = itertools.count(1000)


@dataclass
class LeafPEM:
    cert_pem: str
    key_pem: str
    serial_hex: str
    service: str
    uri: str


class TestCA:
    """A root plus leaf issuance, Consul-shaped JSON included."""

    __test__ = False

    def __init__(self, trust_domain: str = TRUST_DOMAIN) -> None:
        self.trust_domain = trust_domain
        self.root = create_root(
            trust_domain=trust_domain,
            key_type="ec",
            bits=256,
            ttl=timedelta(days=30),
            now=datetime.now(UTC),
            serial=next(_serials),
        )

    def leaf(self, service: str, dc: str = "dc1") -> LeafPEM:
        key = generate_private_key("ec", 256)
        sid = ServiceID(self.trust_domain, dc, service)
        info = parse_csr(make_csr(key, sid))
        leaf = sign_leaf(
            info,
            signing_cert_pem=self.root.cert_pem,
            signing_key_pem=self.root.key_pem,
            ttl=timedelta(days=3),
            now=datetime.now(UTC),
            serial=next(_serials),
        )
        return LeafPEM(leaf.cert_pem, key, leaf.serial_hex, service, sid.uri())

    def root_json(self, active: bool = True) -> dict[str, object]:
        return {
            "ID": self.root.id,
            "Name": self.root.name,
            "RootCert": self.root.cert_pem,
            "IntermediateCerts": None,
            "Active": active,
        }


def leaf_json(leaf: LeafPEM, index: int) -> dict[str, object]:
    return {
        "SerialNumber": leaf.serial_hex,
        "CertPEM": leaf.cert_pem,
        "PrivateKeyPEM": leaf.key_pem,
        "Service": leaf.service,
        "ServiceURI": leaf.uri,
        "CreateIndex": index,
        "ModifyIndex": index,
    }
