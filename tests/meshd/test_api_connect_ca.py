"""The built-in CA through a real dev agent: roots, configuration, leaf
certificates and root rotation, in Consul's shapes
(https://developer.hashicorp.com/consul/api-docs/connect/ca and
https://developer.hashicorp.com/consul/api-docs/agent/connect)."""

from __future__ import annotations

import contextlib
import ssl
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from trio.testing import MockClock

from connect.ca import split_pem_chain
from connect.spiffe import ServiceID, parse_spiffe_id
from meshd.agent.ca_server import RateLimiter, utc_now
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

e2e = pytest.mark.e2e


async def roots_of(api: APIClient | InprocClient) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            resp = await api.get("/v1/connect/ca/roots")
            if resp.status == 200 and resp.json()["Roots"]:
                return dict(resp.json())
            await trio.sleep(0.05)


def uri_san(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert len(uris) == 1
    return str(uris[0])


def handshake(leaf: dict[str, Any], trusted_pems: list[str]) -> str:
    """A loopback TLS handshake: the server presents ``leaf`` (its chain), the
    client trusts only ``trusted_pems``; returns the negotiated version."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert.write_text(leaf["CertPEM"])
        key.write_text(leaf["PrivateKeyPEM"])
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.load_verify_locations(cadata="\n".join(trusted_pems))
        c_in, c_out, s_in, s_out = (
            ssl.MemoryBIO(),
            ssl.MemoryBIO(),
            ssl.MemoryBIO(),
            ssl.MemoryBIO(),
        )
        client = client_ctx.wrap_bio(c_in, c_out)
        server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):
            for side in (client, server):
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        client.do_handshake()
        return str(client.version())


@e2e
@pytest.mark.e2e
async def test_roots_name_the_trust_domain_and_never_carry_private_keys() -> None:
    async with dev_agent() as (_agent, api):
        roots = await roots_of(api)
        assert roots["TrustDomain"].endswith(".consul")
        (root,) = roots["Roots"]
        assert root["Active"] is True and roots["ActiveRootID"] == root["ID"]
        assert "PRIVATE KEY" not in (await api.get("/v1/connect/ca/roots")).text
        assert "SigningKey" not in root
        assert uri_san(root["RootCert"]) == f"spiffe://{roots['TrustDomain']}"
        agent_roots = (await api.get("/v1/agent/connect/ca/roots")).json()
        assert agent_roots["ActiveRootID"] == roots["ActiveRootID"]
        pem = await api.get("/v1/connect/ca/roots?pem=true")
        assert pem.text.count("BEGIN CERTIFICATE") == 1
        config = (await api.get("/v1/connect/ca/configuration")).json()
        assert config["Provider"] == "consul"
        assert config["Config"]["LeafCertTTL"] == "72h0m0s"
        assert config["Config"]["PrivateKeyType"] == "ec"
        assert "PrivateKey" not in config["Config"]


async def test_leaf_is_signed_for_the_service_and_verifies_against_the_root(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        roots = await roots_of(api)
        resp = await api.get("/v1/agent/connect/ca/leaf/web")
        assert resp.status == 200
        leaf = resp.json()
        assert resp.headers["x-consul-index"] == str(leaf["ModifyIndex"])
        ident = parse_spiffe_id(leaf["ServiceURI"])
        assert ident == ServiceID(roots["TrustDomain"], "dc1", "web")
        assert uri_san(split_pem_chain(leaf["CertPEM"])[0]) == leaf["ServiceURI"]
        assert leaf["Service"] == "web" and "PRIVATE KEY" in leaf["PrivateKeyPEM"]
        assert handshake(leaf, [roots["Roots"][0]["RootCert"]]) == "TLSv1.3"
        again = (await api.get("/v1/agent/connect/ca/leaf/web")).json()
        assert again["SerialNumber"] == leaf["SerialNumber"]  # cached, not re-signed


async def test_rotation_cross_signs_and_wakes_leaf_watchers(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        old_roots = await roots_of(api)
        old_root = old_roots["Roots"][0]
        leaf = (await api.get("/v1/agent/connect/ca/leaf/api")).json()
        async with trio.open_nursery() as nursery:
            woke: list[dict[str, Any]] = []

            async def watch() -> None:
                path = f"/v1/agent/connect/ca/leaf/api?index={leaf['ModifyIndex']}&wait=20s"
                woke.append((await api.get(path)).json())

            nursery.start_soon(watch)
            await trio.sleep(0.2)
            body = {"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384}}
            resp = await api.put("/v1/connect/ca/configuration", body)
            assert resp.status == 200, resp.text
            with trio.fail_after(10):
                while not woke:
                    await trio.sleep(0.05)
        new_roots = (await api.get("/v1/connect/ca/roots")).json()
        assert len(new_roots["Roots"]) == 2
        active = next(r for r in new_roots["Roots"] if r["Active"])
        assert active["ID"] != old_root["ID"] and new_roots["ActiveRootID"] == active["ID"]
        assert len(active["IntermediateCerts"]) == 1
        new_leaf = woke[0]
        assert new_leaf["SerialNumber"] != leaf["SerialNumber"]
        # Peers still trusting only the old root accept the new leaf (via the
        # cross-signed intermediate), and the old leaf still verifies too.
        assert handshake(new_leaf, [old_root["RootCert"]]) == "TLSv1.3"
        assert handshake(new_leaf, [active["RootCert"]]) == "TLSv1.3"
        assert handshake(leaf, [r["RootCert"] for r in new_roots["Roots"]]) == "TLSv1.3"
        config = (await api.get("/v1/connect/ca/configuration")).json()
        assert config["Config"]["PrivateKeyBits"] == 384


async def test_rotated_out_root_is_pruned_when_the_ca_clock_passes_two_leaf_ttls(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (agent, api):
        body = {"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384}}
        assert (await api.put("/v1/connect/ca/configuration", body)).status == 200
        assert len((await roots_of(api))["Roots"]) == 2
        assert agent.ca is not None
        # Nothing is dropped while the old root's leaves may still be in use
        # (the leader loop runs its step every few seconds of trio time).
        await trio.sleep(30)
        assert len((await roots_of(api))["Roots"]) == 2
        later = utc_now() + timedelta(hours=2 * 72 + 1)  # two default leaf TTLs
        agent.ca.clock = lambda: later
        with trio.fail_after(120):
            while len((await roots_of(api))["Roots"]) != 1:
                await trio.sleep(1)
        assert (await roots_of(api))["Roots"][0]["Active"] is True


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"PrivateKeyType": "dsa"}, "Config.PrivateKeyType"),
        ({"PrivateKeyType": "ec", "PrivateKeyBits": 300}, "Config.PrivateKeyBits"),
        ({"LeafCertTTL": "soon"}, "Config.LeafCertTTL"),
        ({"LeafCertTTL": "10m"}, "Config.LeafCertTTL"),
        ({"Colour": "blue"}, "Config.Colour"),
    ],
)
async def test_bad_ca_configuration_is_refused_naming_the_field_and_changes_nothing(
    autojump_clock: MockClock, config: dict[str, Any], field: str
) -> None:
    async with inproc_agent() as (_agent, api):
        before = await roots_of(api)
        resp = await api.put("/v1/connect/ca/configuration", {"Config": config})
        assert resp.status == 400
        assert field in resp.text
        assert (await api.get("/v1/connect/ca/roots")).json() == before


async def test_signing_is_rate_limited_with_429(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await roots_of(api)
        body = {"Config": {"CSRMaxPerSecond": 1}}
        assert (await api.put("/v1/connect/ca/configuration", body)).status == 200
        statuses = []
        for i in range(4):
            resp = await api.get(f"/v1/agent/connect/ca/leaf/svc{i}")
            statuses.append(resp.status)
            if resp.status == 429:
                assert "rate limit" in resp.text
        assert statuses[0] == 200
        assert 429 in statuses


def test_rate_limiter_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.allow(2) for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert limiter.allow(2) is True and limiter.allow(2) is False
    assert all(limiter.allow(0) for _ in range(100))


async def test_leaf_for_an_invalid_service_name_is_refused_and_nothing_is_started(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (agent, api):
        await roots_of(api)
        resp = await api.get("/v1/agent/connect/ca/leaf/a%20b")
        assert resp.status == 400 and "service" in resp.text
        assert "a b" not in agent.leaf_cache._entries
