"""Local intention decisions and the cache of the agent's default (pure)."""

from __future__ import annotations

import pytest

from connect.intentions import Decision
from connect.proxy.authz import Authorizer, intention_from_json, intentions_from_match
from connect.proxy.errors import ProxyConfigError


def _ixn(
    src: str, dst: str, action: str, ixn_id: str, perms: object = None, precedence: object = None
) -> dict[str, object]:
    if precedence is None:
        precedence = {("*", "*"): 5, ("*", dst): 8, (src, "*"): 6}.get((src, dst), 9)
    return {
        "ID": ixn_id,
        "SourceName": src,
        "DestinationName": dst,
        "Action": action,
        "Permissions": perms,
        "Precedence": precedence,
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
    assert ixn.precedence == 9
    with pytest.raises(ProxyConfigError):
        intention_from_json({"SourceName": "a", "DestinationName": "b"})


@pytest.mark.parametrize("precedence", ["missing", "9", 9.0, True])
def test_an_intention_without_an_integer_precedence_is_refused(precedence: object) -> None:
    body = _ixn("web", "api", "allow", "i1")
    if precedence == "missing":
        del body["Precedence"]
    else:
        body["Precedence"] = precedence
    with pytest.raises(ProxyConfigError) as exc:
        intention_from_json(body)
    assert exc.value.field == "Intention[i1].Precedence"


def test_the_carried_precedence_decides_not_a_recomputed_one() -> None:
    authz = Authorizer()
    body = {
        "api": [
            _ixn("web", "api", "deny", "exact", precedence=9),
            _ixn("*", "api", "allow", "wild", precedence=10),
        ]
    }
    authz.set_intentions("api", intentions_from_match(body, "api"))
    d = authz.decide("web", "api")
    assert d is not None and d.allowed and d.intention_id == "wild"


def test_one_malformed_entry_leaves_every_decision_to_the_agent() -> None:
    # Dropping only the bad (exact, deny) entry would let the wildcard allow win.
    good = _ixn("*", "api", "allow", "wild")
    bad = _ixn("web", "api", "deny", "exact")
    del bad["Precedence"]
    assert intentions_from_match({"api": [good, bad]}, "api") == []
    assert intentions_from_match({"api": [good, "junk"]}, "api") == []
    assert [i.id for i in intentions_from_match({"api": [good]}, "api")] == ["wild"]
    authz = Authorizer()
    authz.set_intentions("api", intentions_from_match({"api": [good, bad]}, "api"))
    assert authz.decide("web", "api") is None


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
