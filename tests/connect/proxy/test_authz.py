"""Local intention decisions and the cache of the agent's default (pure)."""

from __future__ import annotations

import pytest

from connect.intentions import Decision
from connect.proxy.authz import Authorizer, intention_from_json, intentions_from_match
from connect.proxy.errors import ProxyConfigError


def _ixn(src: str, dst: str, action: str, ixn_id: str, perms: object = None) -> dict[str, object]:
    return {
        "ID": ixn_id,
        "SourceName": src,
        "DestinationName": dst,
        "Action": action,
        "Permissions": perms,
        "Precedence": 9,
    }


def test_json_is_converted_to_records() -> None:
    ixn = intention_from_json(_ixn("web", "api", "Allow", "i1", perms=[{"Action": "allow"}]))
    assert (ixn.id, ixn.source_name, ixn.destination_name, ixn.action) == (
        "i1",
        "web",
        "api",
        "allow",
    )
    assert ixn.permissions == ({"Action": "allow"},)
    with pytest.raises(ProxyConfigError):
        intention_from_json({"SourceName": "a", "DestinationName": "b"})


def test_matching_intention_decides_locally() -> None:
    authz = Authorizer()
    authz.set_intentions(
        "api", intentions_from_match({"api": [_ixn("web", "api", "deny", "i1")]}, "api")
    )
    d = authz.decide("web", "api")
    assert d is not None and not d.allowed and d.intention_id == "i1"


def test_wildcard_and_l7_intentions() -> None:
    authz = Authorizer()
    body = {"api": [_ixn("*", "api", "allow", "w"), _ixn("web", "api", "", "l7", perms=[{}])]}
    authz.set_intentions("api", intentions_from_match(body, "api"))
    allowed = authz.decide("billing", "api")
    assert allowed is not None and allowed.allowed and allowed.intention_id == "w"
    l7 = authz.decide("web", "api")
    assert l7 is not None and not l7.allowed and l7.intention_id == "l7"


def test_no_match_needs_the_agent_and_the_answer_is_cached_per_generation() -> None:
    authz = Authorizer()
    authz.set_intentions("api", [])
    assert authz.decide("web", "api") is None
    gen = authz.generation("api")
    authz.remember("web", "api", Decision(True, "default allow", None), gen)
    assert authz.decide("web", "api") == Decision(True, "default allow", None)
    authz.set_intentions("api", [])
    assert authz.decide("web", "api") is None


def test_a_stale_answer_is_not_cached() -> None:
    authz = Authorizer()
    gen = authz.generation("api")
    authz.set_intentions("api", [])
    authz.remember("web", "api", Decision(True, "old", None), gen)
    assert authz.decide("web", "api") is None
