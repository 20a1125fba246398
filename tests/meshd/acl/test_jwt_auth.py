"""The jwt auth method core: config checks, validation against a given clock,
claim mapping (no I/O)."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshd.acl import jwt_auth
from meshd.acl.jwt_auth import JWTConfigError, JWTLoginError, map_claims, parse_config, validate
from tests.meshd.jwt_support import jwks, pem_public, sign

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NOW = 1_800_000_000.0


def cfg(**extra: Any) -> jwt_auth.JWTConfig:
    return parse_config({"JWTValidationPubKeys": [pem_public(KEY)], **extra})


def test_config_needs_exactly_one_key_source() -> None:
    with pytest.raises(JWTConfigError, match="exactly one of 'JWTValidationPubKeys'"):
        parse_config({})
    with pytest.raises(JWTConfigError, match="exactly one of"):
        parse_config({"JWTValidationPubKeys": [pem_public(KEY)], "JWKSURL": "http://x"})
    with pytest.raises(JWTConfigError, match=r"JWTValidationPubKeys\[0\]"):
        parse_config({"JWTValidationPubKeys": ["not a pem"]})
    with pytest.raises(JWTConfigError, match="unknown field 'Bogus'"):
        parse_config({"JWKSURL": "http://x", "Bogus": 1})
    with pytest.raises(JWTConfigError, match="unsupported algorithm 'HS256'"):
        parse_config({"JWKSURL": "http://x", "JWTSupportedAlgs": ["HS256"]})


def test_leeways_default_and_can_be_disabled() -> None:
    c = cfg()
    assert (c.clock_skew, c.exp_leeway, c.nbf_leeway) == (60.0, 150.0, 150.0)
    c = cfg(ClockSkewLeeway="5s", ExpirationLeeway=-1, NotBeforeLeeway="1m")
    assert (c.clock_skew, c.exp_leeway, c.nbf_leeway) == (5.0, 0.0, 60.0)


def test_expiry_honours_the_leeway_exactly_at_the_injected_clock() -> None:
    c = cfg(ClockSkewLeeway="10s", ExpirationLeeway=-1)
    token = sign(KEY, {"exp": NOW - 10})
    assert validate(token, c, NOW)["exp"] == NOW - 10
    with pytest.raises(JWTLoginError, match="expired"):
        validate(token, c, NOW + 0.5)
    early = sign(KEY, {"nbf": NOW + 160})
    with pytest.raises(JWTLoginError, match="not valid yet"):
        validate(early, cfg(ClockSkewLeeway="9s"), NOW)
    assert validate(early, cfg(ClockSkewLeeway="10s"), NOW)["nbf"] == NOW + 160


def test_issuer_audience_and_signature() -> None:
    c = cfg(BoundIssuer="iss-a", BoundAudiences=["a", "b"])
    assert validate(sign(KEY, {"iss": "iss-a", "aud": "b"}), c, NOW)["aud"] == "b"
    with pytest.raises(JWTLoginError, match="issuer"):
        validate(sign(KEY, {"iss": "iss-b", "aud": "a"}), c, NOW)
    with pytest.raises(JWTLoginError, match="audience"):
        validate(sign(KEY, {"iss": "iss-a", "aud": ["c"]}), c, NOW)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(JWTLoginError, match="signature"):
        validate(sign(other, {"iss": "iss-a", "aud": "a"}), c, NOW)


def test_jwks_keys_validate_and_es256_works() -> None:
    c = parse_config({"JWKSURL": "file:///unused", "JWTSupportedAlgs": ["RS256"]})
    keys = jwt_auth.jwks_keys(json.dumps(jwks(("k1", KEY))))
    assert validate(sign(KEY, {"sub": "x"}), c, NOW, keys)["sub"] == "x"
    with pytest.raises(JWTLoginError, match="no keys"):
        validate(sign(KEY, {"sub": "x"}), c, NOW, [])
    ec_key = ec.generate_private_key(ec.SECP256R1())
    c = parse_config({"JWTValidationPubKeys": [pem_public(ec_key)], "JWTSupportedAlgs": ["ES256"]})
    assert validate(jwt.encode({"a": 1}, ec_key, algorithm="ES256"), c, NOW)["a"] == 1


def test_claim_mappings_use_json_pointers_and_refuse_wrong_types() -> None:
    c = cfg(
        ClaimMappings={"/k8s/ns": "ns", "admin": "admin", "/missing": "m"},
        ListClaimMappings={"groups": "groups", "one": "one"},
    )
    claims = {"k8s": {"ns": "default"}, "admin": True, "groups": ["a", 1], "one": "x"}
    assert map_claims(claims, c) == (
        {"ns": "default", "admin": "true"},
        {"groups": ["a", "1"], "one": ["x"]},
    )
    with pytest.raises(JWTLoginError, match="to string"):
        map_claims({"admin": {"nested": 1}}, c)
