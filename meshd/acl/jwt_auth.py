"""The ``jwt`` auth method: configuration checks, token validation, claim mapping.

Follows Consul's JWT auth method
(https://developer.hashicorp.com/consul/docs/security/acl/auth-methods/jwt),
whose validation is hashicorp/cap's ``jwt.Validator``: the signature is
checked against ``JWTValidationPubKeys`` (PEM) or the keys of a JWKS
(``JWKSURL``; the caller fetches it, so this module does no I/O), then
``BoundIssuer``, ``BoundAudiences``, ``exp`` and ``nbf`` with
``ClockSkewLeeway`` (default 60 s) plus ``ExpirationLeeway`` /
``NotBeforeLeeway`` (default 150 s each; -1 disables a leeway). Claims are
then mapped through ``ClaimMappings`` (to ``value.<name>``) and
``ListClaimMappings`` (to ``list.<name>``); a claim path is a JSON pointer
(``/kubernetes.io/namespace``) or a top-level claim name.

The clock is a parameter (``now``); PyJWT's own time checks are switched off
so that only this module decides, against that clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import get_default_algorithms

from ..durations import parse_duration
from ..errors import DurationError

CONFIG_FIELDS = (
    "JWTValidationPubKeys",
    "JWKSURL",
    "JWKSCACert",
    "OIDCDiscoveryURL",
    "OIDCDiscoveryCACert",
    "JWTSupportedAlgs",
    "BoundAudiences",
    "BoundIssuer",
    "ClaimMappings",
    "ListClaimMappings",
    "ClockSkewLeeway",
    "ExpirationLeeway",
    "NotBeforeLeeway",
)
DEFAULT_ALGS = ("RS256",)
DEFAULT_CLOCK_SKEW = 60.0
DEFAULT_EXP_NBF_LEEWAY = 150.0


class JWTConfigError(ValueError):
    """An auth method ``Config`` the jwt type cannot use (Consul's text)."""


class JWTLoginError(ValueError):
    """A bearer token that does not validate against the method's config."""


@dataclass(frozen=True)
class JWTConfig:
    """A validated ``jwt`` auth method configuration."""

    pub_keys: tuple[str, ...]
    jwks_url: str
    algorithms: tuple[str, ...]
    bound_audiences: tuple[str, ...]
    bound_issuer: str
    claim_mappings: Mapping[str, str]
    list_claim_mappings: Mapping[str, str]
    clock_skew: float
    exp_leeway: float
    nbf_leeway: float


def _strings(config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = config.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise JWTConfigError(f"Config.{key}: must be a list of strings")
    return tuple(value)


def _mapping(config: Mapping[str, Any], key: str) -> dict[str, str]:
    value = config.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise JWTConfigError(f"Config.{key}: must be a map of strings")
    return dict(value)


def _leeway(config: Mapping[str, Any], key: str, default: float) -> float:
    """A leeway: a duration string or seconds; 0 means the default, -1 none."""
    raw = config.get(key, 0)
    if isinstance(raw, str):
        try:
            seconds = parse_duration(raw) if raw else 0.0
        except DurationError as exc:
            raise JWTConfigError(f"Config.{key}: {exc}") from None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    else:
        raise JWTConfigError(f"Config.{key}: must be a duration")
    if seconds == 0:
        return default
    return 0.0 if seconds < 0 else seconds


def _public_key(pem: str) -> Any:
    """The public key in a PEM ``PUBLIC KEY`` block or certificate, else None."""
    data = pem.encode()
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        pass
    try:
        return x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        return None


def parse_config(config: Mapping[str, Any]) -> JWTConfig:
    """Check a ``jwt`` method's ``Config``; raises ``JWTConfigError``."""
    unknown = sorted(set(config) - set(CONFIG_FIELDS))
    if unknown:
        raise JWTConfigError(f"Config: unknown field {unknown[0]!r}")
    keys = _strings(config, "JWTValidationPubKeys")
    jwks_url = config.get("JWKSURL") or ""
    if not isinstance(jwks_url, str):
        raise JWTConfigError("Config.JWKSURL: must be a string")
    if config.get("OIDCDiscoveryURL"):
        raise JWTConfigError("Config.OIDCDiscoveryURL: OIDC discovery is not supported by meshd")
    if bool(keys) == bool(jwks_url):
        raise JWTConfigError(
            "exactly one of 'JWTValidationPubKeys', 'JWKSURL', or 'OIDCDiscoveryURL' must be set"
        )
    for i, pem in enumerate(keys):
        if _public_key(pem) is None:
            raise JWTConfigError(f"error parsing public key JWTValidationPubKeys[{i}]")
    algs = _strings(config, "JWTSupportedAlgs") or DEFAULT_ALGS
    known = get_default_algorithms()
    for alg in algs:
        if alg not in known or alg == "none" or alg.startswith("HS"):
            raise JWTConfigError(f"Config.JWTSupportedAlgs: unsupported algorithm {alg!r}")
    bound_issuer = config.get("BoundIssuer") or ""
    if not isinstance(bound_issuer, str):
        raise JWTConfigError("Config.BoundIssuer: must be a string")
    return JWTConfig(
        pub_keys=keys,
        jwks_url=jwks_url,
        algorithms=algs,
        bound_audiences=_strings(config, "BoundAudiences"),
        bound_issuer=bound_issuer,
        claim_mappings=_mapping(config, "ClaimMappings"),
        list_claim_mappings=_mapping(config, "ListClaimMappings"),
        clock_skew=_leeway(config, "ClockSkewLeeway", DEFAULT_CLOCK_SKEW),
        exp_leeway=_leeway(config, "ExpirationLeeway", DEFAULT_EXP_NBF_LEEWAY),
        nbf_leeway=_leeway(config, "NotBeforeLeeway", DEFAULT_EXP_NBF_LEEWAY),
    )


def jwks_keys(document: bytes | str) -> list[Any]:
    """The signing keys of a JWKS document; raises ``JWTLoginError``."""
    try:
        keyset = jwt.PyJWKSet.from_json(
            document.decode() if isinstance(document, bytes) else document
        )
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise JWTLoginError(f"failed to parse JWKS: {exc}") from None
    return list(keyset.keys)


def _check_times(claims: Mapping[str, Any], cfg: JWTConfig, now: float) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and (
        not isinstance(exp, int | float) or now - cfg.clock_skew - cfg.exp_leeway > exp
    ):
        raise JWTLoginError("token is expired (exp)")
    if nbf is not None and (
        not isinstance(nbf, int | float) or now + cfg.clock_skew + cfg.nbf_leeway < nbf
    ):
        raise JWTLoginError("token not valid yet (nbf)")


def _check_bounds(claims: Mapping[str, Any], cfg: JWTConfig) -> None:
    if cfg.bound_issuer and claims.get("iss") != cfg.bound_issuer:
        raise JWTLoginError("invalid issuer (iss) claim")
    if cfg.bound_audiences:
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(auds) & set(cfg.bound_audiences):
            raise JWTLoginError("invalid audience (aud) claim")


def validate(token: str, cfg: JWTConfig, now: float, jwks: Sequence[Any] = ()) -> dict[str, Any]:
    """The verified claims of bearer ``token``: the signature against the
    configured PEM keys or ``jwks`` (the fetched JWKS's keys), then issuer,
    audience and times against ``now``. Raises ``JWTLoginError``."""
    keys: list[Any] = [_public_key(k) for k in cfg.pub_keys] if cfg.pub_keys else list(jwks)
    if not keys:
        raise JWTLoginError("no keys to validate the token with")
    options: Any = {"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                    "verify_aud": False, "verify_iss": False}  # fmt: skip
    last: Exception | None = None
    for key in keys:
        try:
            claims = jwt.decode(token, key, algorithms=list(cfg.algorithms), options=options)
            break
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError, jwt.InvalidAlgorithmError) as exc:
            last = exc
        except jwt.PyJWTError as exc:
            raise JWTLoginError(f"failed to validate the token: {exc}") from None
        except (ValueError, TypeError) as exc:  # a key of the wrong kind for the token's alg
            last = exc
    else:
        raise JWTLoginError(f"failed to verify signature: {last}")
    if not isinstance(claims, dict):
        raise JWTLoginError("token claims are not an object")
    _check_times(claims, cfg, now)
    _check_bounds(claims, cfg)
    return claims


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by JSON pointer (``/a/b``) or by top-level name."""
    if not path.startswith("/"):
        return claims.get(path)
    node: Any = claims
    for raw in path[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def map_claims(
    claims: Mapping[str, Any], cfg: JWTConfig
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``(value, list)``: the claims selectors and bind names see, through
    ``ClaimMappings`` and ``ListClaimMappings``. Raises ``JWTLoginError`` for
    a mapped claim of the wrong type (Consul refuses those logins)."""
    values: dict[str, str] = {}
    for path, name in cfg.claim_mappings.items():
        raw = _claim(claims, path)
        if raw is None:
            continue
        text = _text(raw)
        if text is None:
            raise JWTLoginError(f"error converting claim {path!r} to string")
        values[name] = text
    lists: dict[str, list[str]] = {}
    for path, name in cfg.list_claim_mappings.items():
        raw = _claim(claims, path)
        if raw is None:
            continue
        items = raw if isinstance(raw, list) else [raw]
        texts = [_text(item) for item in items]
        if any(t is None for t in texts):
            raise JWTLoginError(f"error converting claim {path!r} to list of strings")
        lists[name] = [t for t in texts if t is not None]
    return values, lists
