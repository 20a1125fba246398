"""Text of the ACL errors, which clients match on."""

from __future__ import annotations

from meshd.acl.builtin import ANONYMOUS_TOKEN_ACCESSOR_ID
from meshd.acl.errors import ACLError, ACLPermissionDenied, RulesError
from meshd.errors import MeshdError


def test_permission_denied_names_accessor_permission_and_resource() -> None:
    err = ACLPermissionDenied("5e1f-ac", "service:write", "db")
    assert str(err) == (
        "Permission denied: token with AccessorID '5e1f-ac' "
        "lacks permission 'service:write' on \"db\""
    )


def test_permission_denied_without_resource_has_no_on_clause() -> None:
    err = ACLPermissionDenied("5e1f-ac", "operator:read")
    assert (
        str(err)
        == "Permission denied: token with AccessorID '5e1f-ac' lacks permission 'operator:read'"
    )


def test_permission_denied_for_the_anonymous_token_explains_it() -> None:
    err = ACLPermissionDenied(ANONYMOUS_TOKEN_ACCESSOR_ID, "key:read", "app/config")
    assert str(err) == (
        "Permission denied: anonymous token lacks permission 'key:read' on \"app/config\". "
        "The anonymous token is used implicitly when a request does not specify a token."
    )


def test_rules_error_renders_with_and_without_position() -> None:
    assert str(RulesError("bad", 3, 7)) == "rules: line 3, column 7: bad"
    assert str(RulesError("bad", 3)) == "rules: line 3: bad"
    assert str(RulesError("too big")) == "rules: too big"


def test_acl_errors_belong_to_the_meshd_hierarchy() -> None:
    assert issubclass(ACLPermissionDenied, ACLError)
    assert issubclass(RulesError, ACLError)
    assert issubclass(ACLError, MeshdError)
