"""Parsing ACL rules (HCL and JSON) into Policy, and merging policies."""

from __future__ import annotations

import json

import pytest

from meshd.acl.errors import RulesError
from meshd.acl.rules import (
    MAX_RULES_BYTES,
    Access,
    Policy,
    Resource,
    Rule,
    merge_policies,
    parse_rules,
)

R, W, L, D = Access.READ, Access.WRITE, Access.LIST, Access.DENY

# (HCL, JSON) pairs that must parse to equal policies.
EQUIVALENT_FORMS: list[tuple[str, str]] = [
    ('key_prefix "" { policy = "read" }', '{"key_prefix": {"": {"policy": "read"}}}'),
    (
        'key "secret" { policy = "deny" }\nkey_prefix "app/" { policy = "list" }',
        '{"key": {"secret": {"policy": "deny"}}, "key_prefix": {"app/": {"policy": "list"}}}',
    ),
    (
        'service "web" { policy = "write" intentions = "read" }',
        '{"service": {"web": {"policy": "write", "intentions": "read"}}}',
    ),
    (
        'service "web" {\n  policy = "write"\n  intentions = "read"\n}\n',
        '{"service": [{"web": {"policy": "write", "intentions": "read"}}]}',
    ),
    (
        'operator = "read"\nacl = "write"\nmesh = "write"',
        '{"operator": "read", "acl": "write", "mesh": "write"}',
    ),
    ('keyring = "deny"\npeering = "read"', '{"keyring": "deny", "peering": "read"}'),
    (
        'node_prefix "" { policy = "read" }\nnode "n1" { policy = "write" }',
        '{"node_prefix": {"": {"policy": "read"}}, "node": {"n1": {"policy": "write"}}}',
    ),
    (
        'agent_prefix "" { policy = "read" }\nagent "a1" { policy = "write" }\n'
        'session_prefix "" { policy = "write" }',
        '{"agent_prefix": {"": {"policy": "read"}}, "agent": {"a1": {"policy": "write"}},'
        ' "session_prefix": {"": {"policy": "write"}}}',
    ),
    (
        'event_prefix "deploy-" { policy = "write" }\nquery "q" { policy = "read" }\n'
        'query_prefix "" { policy = "deny" }',
        '{"event_prefix": {"deploy-": {"policy": "write"}}, "query": {"q": {"policy": "read"}},'
        ' "query_prefix": {"": {"policy": "deny"}}}',
    ),
    (
        '# every comment style\n// line\n/* block\n spanning */ service_prefix "" '
        '{ policy = "read", intentions = "deny" }\nservice "db" { policy = "deny" }',
        '{"service": {"db": {"policy": "deny"}},'
        ' "service_prefix": {"": {"policy": "read", "intentions": "deny"}}}',
    ),
    (
        'key "a\\"b\\u00e9" { policy = "write" }',
        '{"key": {"a\\"b\\u00e9": {"policy": "write"}}}',
    ),
    ("", "{}"),
]


@pytest.mark.parametrize(("hcl", "json_text"), EQUIVALENT_FORMS)
def test_hcl_and_json_forms_give_equal_policies(hcl: str, json_text: str) -> None:
    json.loads(json_text)  # the corpus itself is valid JSON
    assert parse_rules(hcl) == parse_rules(json_text)


def test_parse_gives_typed_rules_for_the_reference_policy() -> None:
    policy = parse_rules(
        """
key_prefix "" { policy = "read" }
key "secret" { policy = "deny" }
service_prefix "" { policy = "read" }
service "web" { policy = "write" intentions = "read" }   # same line
node_prefix "" { policy = "read" }
operator = "read"
acl = "write"
mesh = "write"
"""
    )
    assert set(policy.rules) == {
        Rule(Resource.KEY, "", True, R),
        Rule(Resource.KEY, "secret", False, D),
        Rule(Resource.SERVICE, "", True, R),
        Rule(Resource.SERVICE, "web", False, W, intentions=R),
        Rule(Resource.NODE, "", True, R),
    }
    assert (policy.operator, policy.acl, policy.mesh) == (R, W, W)
    assert (policy.keyring, policy.peering) == (None, None)


def test_rule_order_does_not_change_policy_equality() -> None:
    a = parse_rules('key "a" { policy = "read" }\nnode "b" { policy = "write" }')
    b = parse_rules('node "b" { policy = "write" }\nkey "a" { policy = "read" }')
    assert a == b
    assert a.rules == b.rules


def test_empty_single_value_and_empty_intentions_mean_unset() -> None:
    policy = parse_rules('operator = ""\nservice "web" { policy = "read" intentions = "" }')
    assert policy.operator is None
    assert policy.rules == (Rule(Resource.SERVICE, "web", False, R, intentions=None),)


def test_list_policy_is_accepted_on_key_rules() -> None:
    policy = parse_rules('key_prefix "logs/" { policy = "list" }')
    assert policy.rules == (Rule(Resource.KEY, "logs/", True, L),)


def test_rules_of_exactly_the_size_cap_are_accepted() -> None:
    head = 'key "a" { policy = "read" }\n'
    text = head + "#" * (MAX_RULES_BYTES - len(head))
    assert len(text.encode()) == MAX_RULES_BYTES
    assert parse_rules(text).rules == (Rule(Resource.KEY, "a", False, R),)


def test_rules_over_the_size_cap_are_rejected() -> None:
    text = "#" * (MAX_RULES_BYTES + 1)
    with pytest.raises(RulesError) as err:
        parse_rules(text)
    assert err.value.line is None
    assert (
        str(err.value)
        == f"rules: rules are {MAX_RULES_BYTES + 1} bytes, more than the 65536 allowed"
    )


# (rules, line, column, reason)
MALFORMED: list[tuple[str, int, int, str]] = [
    (
        'key_prefix "" {\n  policy = "read"\n}\nservice "web" { policy = "writ" }',
        4,
        26,
        'unknown policy "writ" for service "web" (want read, write or deny)',
    ),
    (
        'key "a" {\n  policy = "writ"\n}',
        2,
        12,
        'unknown policy "writ" for key "a" (want read, write, list or deny)',
    ),
    (
        'servce "web" { policy = "read" }',
        1,
        1,
        'unknown rule type "servce" (did you mean "service"?)',
    ),
    ('\n\nfrobnicate = "read"', 3, 1, 'unknown rule type "frobnicate"'),
    (
        'node "n" { policy = "list" }',
        1,
        21,
        'policy "list" is only valid for key and key_prefix rules, not node "n"',
    ),
    (
        'operator = "list"',
        1,
        12,
        'policy "list" is only valid for key and key_prefix rules, not operator',
    ),
    (
        'service "a" { policy = "read" }\nservice "a" { policy = "write" }',
        2,
        9,
        'duplicate rule service "a" (first on line 1)',
    ),
    (
        'operator = "read"\n\noperator = "write"',
        3,
        1,
        'duplicate "operator" rule (first on line 1)',
    ),
    ('service web { policy = "read" }', 1, 9, "label of service must be a quoted string, got web"),
    ('key 42 { policy = "read" }', 1, 5, "label of key must be a quoted string, got 42"),
    (
        'service "web" { polcy = "read" }',
        1,
        17,
        'unknown attribute "polcy" in service "web" (want policy or intentions)',
    ),
    (
        'key "k" { intentions = "read" }',
        1,
        11,
        'unknown attribute "intentions" in key "k" (want policy)',
    ),
    ('service "web" { intentions = "read" }', 1, 9, 'service "web" has no policy'),
    (
        'service "web" { policy = "read" policy = "write" }',
        1,
        33,
        'duplicate attribute "policy" in service "web"',
    ),
    (
        'service "web" { policy = read }',
        1,
        26,
        'policy for service "web" must be a quoted string, got read',
    ),
    ("acl = 1", 1, 7, "policy for acl must be a quoted string, got 1"),
    (
        'service "web" { policy = "read" intentions = "list" }',
        1,
        46,
        'policy "list" is only valid for key and key_prefix rules, not intentions of service "web"',
    ),
    ('key "a" {\n  policy = "read"\n', 3, 1, 'missing "}" to close the block opened on line 1'),
    ('key "a" { policy = "read" }\n}', 2, 1, 'unexpected "}" with no block open'),
    ('key "a" { policy = "read }', 1, 20, "unterminated string (strings end on the same line)"),
    ('/* never closed\nkey "a" {}', 1, 1, "unterminated /* comment"),
    ('key "a" { policy @ "read" }', 1, 18, 'unexpected character "@"'),
    ('service "a" "b" { policy = "read" }', 1, 13, 'service takes one label, got "b" too'),
    (
        'service = "write"',
        1,
        11,
        'service must be a block like service "name" { policy = "read" }, got "write"',
    ),
    ('key "a" { policy = "read\\q" }', 1, 20, 'invalid escape sequence in string "read\\q"'),
    (
        '{"service": {"web": {"policy": "write",}}}',
        1,
        40,
        "invalid JSON: Expecting property name enclosed in double quotes",
    ),
    (
        '{\n  "service": {"web": {"policy": "wrote"}}\n}',
        2,
        33,
        'unknown policy "wrote" for service "web" (want read, write or deny)',
    ),
    ('{"service": {"web": "write"}}', 1, 21, 'service "web" must be a block, got "write"'),
]


@pytest.mark.parametrize(("text", "line", "column", "reason"), MALFORMED)
def test_malformed_rules_are_rejected_with_line_column_and_reason(
    text: str, line: int, column: int, reason: str
) -> None:
    with pytest.raises(RulesError) as err:
        parse_rules(text)
    assert (err.value.line, err.value.column, err.value.reason) == (line, column, reason)
    assert str(err.value) == f"rules: line {line}, column {column}: {reason}"


def test_rules_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_rules("nope")


def test_merge_keeps_the_strongest_access_deny_then_write_then_list_then_read() -> None:
    def key(policy: str) -> Policy:
        return parse_rules(f'key "k" {{ policy = "{policy}" }}')

    cases = [
        (("read", "list"), L),
        (("list", "write"), W),
        (("write", "deny"), D),
        (("read", "deny"), D),
    ]
    for (a, b), expected in cases:
        for order in ((a, b), (b, a)):
            merged = merge_policies([key(order[0]), key(order[1])])
            assert merged.rules == (Rule(Resource.KEY, "k", False, expected),), order


def test_merge_keeps_exact_and_prefix_rules_apart() -> None:
    merged = merge_policies(
        [
            parse_rules('key "k" { policy = "deny" }'),
            parse_rules('key_prefix "k" { policy = "write" }'),
        ]
    )
    assert set(merged.rules) == {
        Rule(Resource.KEY, "k", False, D),
        Rule(Resource.KEY, "k", True, W),
    }


def test_merge_combines_service_intentions_separately_from_policy() -> None:
    merged = merge_policies(
        [
            parse_rules('service "web" { policy = "write" }'),
            parse_rules('service "web" { policy = "read" intentions = "write" }'),
            parse_rules('service "db" { policy = "deny" }'),
            parse_rules('service "db" { policy = "read" intentions = "read" }'),
        ]
    )
    assert set(merged.rules) == {
        Rule(Resource.SERVICE, "web", False, W, intentions=W),
        Rule(Resource.SERVICE, "db", False, D, intentions=R),
    }


def test_merge_of_single_values_keeps_the_strongest_and_drops_datacenters() -> None:
    a = Policy(operator=R, acl=W, datacenters=frozenset({"dc1"}))
    b = Policy(operator=W, acl=D, mesh=R)
    merged = merge_policies([a, b])
    assert (merged.operator, merged.acl, merged.mesh, merged.keyring) == (W, D, R, None)
    assert merged.datacenters == frozenset()


def test_policy_applies_in_its_datacenters_only() -> None:
    scoped = Policy(datacenters=frozenset({"dc1"}))
    assert scoped.applies_in("dc1")
    assert not scoped.applies_in("dc2")
    assert Policy().applies_in("dc2")
