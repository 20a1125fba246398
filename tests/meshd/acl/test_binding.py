"""Binding rules: selectors over mapped claims, ${value.x} names, validation."""

from __future__ import annotations

import pytest

from meshd.acl.binding import BindingError, bind, interpolate, validate_rule
from registry.records import ACLBindingRule


def rule(bind_type: str, name: str, selector: str = "", variable: str = "") -> ACLBindingRule:
    return ACLBindingRule(
        "id", auth_method="m", selector=selector, bind_type=bind_type, bind_name=name,
        bind_vars_name=variable,
    )  # fmt: skip


def test_matching_rules_bind_interpolated_identities() -> None:
    values = {"sa": "web", "ns": "default"}
    lists = {"groups": ["ops"]}
    rules = [
        rule("service", "${value.sa}", "value.ns == default"),
        rule("service", "never", "value.ns == other"),
        rule("node", "node-${value.sa}", '"ops" in list.groups'),
        rule("role", "r-${ value.ns }"),
        rule("policy", "readers"),
        rule("templated-policy", "builtin/service", "", "${value.sa}"),
    ]
    out = bind(rules, values, lists)
    assert out.services == ["web"] and out.nodes == ["node-web"]
    assert out.roles == ["r-default"] and out.policies == ["readers"]
    assert out.templated == [("builtin/service", "web")] and not out.empty()
    assert bind([rule("service", "x", "value.ns == other")], values, lists).empty()


def test_a_claim_that_makes_an_invalid_name_fails_the_login() -> None:
    with pytest.raises(BindingError, match="Service"):
        bind([rule("service", "${value.sa}")], {"sa": "Not Valid"}, {})
    with pytest.raises(BindingError, match=r"unknown variable 'value\.zz'"):
        interpolate("${value.zz}", {})


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("", "x", "", ""), "no BindType is set"),
        (("group", "x", "", ""), 'unknown BindType "group"'),
        (("service", "", "", ""), "no BindName is set"),
        (("service", "${value.nope}", "", ""), "invalid BindName: unknown variable"),
        (("node", "x", "", "value.a =="), "Selector is invalid"),
        (("templated-policy", "builtin/nope", "", ""), "Invalid templated policy Name"),
        (("templated-policy", "builtin/node", "", ""), '"name" is required'),
    ],
)
def test_rules_are_checked_before_they_are_stored(args: tuple[str, ...], text: str) -> None:
    bind_type, name, variable, selector = args
    with pytest.raises(BindingError, match=text):
        validate_rule(bind_type, name, variable, selector, ["a"])


def test_valid_rule_passes_with_sample_claims() -> None:
    validate_rule("templated-policy", "builtin/node", "n-${value.a}", "value.a == x", ["a"])
