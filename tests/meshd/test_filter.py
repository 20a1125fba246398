"""The ``?filter=`` expression language (meshd.filter), against Consul-shaped JSON."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bench import filter_bench
from meshd.filter import (
    MAX_EXPRESSION_BYTES,
    MAX_NESTING,
    And,
    FilterError,
    Match,
    MatchOp,
    Not,
    Or,
    Selector,
    Value,
    _compile_regex,
    apply_filter,
    compile_filter,
    parse,
)

# An item shaped like a /v1/health/service/:service entry, flattened fields included
# so one document can exercise every type.
ITEM: dict[str, Any] = {
    "Node": "web-1",
    "Name": "",
    "ServicePort": 8080,
    "Weight": 1.5,
    "EnableTagOverride": False,
    "Primary": True,
    "ServiceTags": ["primary", "v2", "canary"],
    "Ports": [8080, 8443],
    "EmptyTags": [],
    "NodeMeta": {"os": "linux", "rack-1": "r1", "key with spaces": "yes", "os.version": "6"},
    "EmptyMeta": {},
    "TaggedAddresses": None,
    "Service": {"Service": "web", "Tags": ["primary"], "Meta": {"version": "1.0"}},
    "Checks": [
        {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
        {"CheckID": "service:web", "Status": "critical", "ServiceTags": ["primary"]},
    ],
}


def matches(expression: str, item: Any = ITEM) -> bool:
    return compile_filter(expression)(item)


def error(expression: str, schema: Any = None) -> FilterError:
    with pytest.raises(FilterError) as info:
        compile_filter(expression, schema)
    return info.value


# --- operators on each type ---------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Node == "web-1"', True),
        ('Node == "web-2"', False),
        ('Node != "web-2"', True),
        ('Node != "web-1"', False),
        ("Node == `web-1`", True),
        ('Name == ""', True),
        ('Node contains "eb-"', True),  # substring
        ('Node not contains "db"', True),
        ('"web" in Node', True),
        ('"db" not in Node', True),
        ('Node matches "^web-[0-9]+$"', True),
        ('Node matches "eb"', True),  # unanchored, like Go's MatchString
        ('Node matches "^eb"', False),
        ('Node not matches "^db-"', True),
        ("Name is empty", True),
        ("Node is empty", False),
        ("Node is not empty", True),
        ('Node == "WEB-1"', False),  # comparisons are case-sensitive
    ],
)
def test_string_fields_support_every_operator(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("ServicePort == 8080", True),
        ('ServicePort == "8080"', True),  # the value is coerced to the field's type
        ("ServicePort == `8080`", True),
        ('ServicePort == "0x1F90"', True),  # Go integer syntax, base prefix
        ('ServicePort == "0o17620"', True),
        ('ServicePort == "017620"', True),  # legacy octal, as strconv.ParseInt(s, 0, 64)
        ('ServicePort == "8_080"', True),  # Go literal digit separators
        ("ServicePort == 8080.0", True),  # numbers compare numerically
        ("ServicePort == 8081", False),
        ("ServicePort != 8081", True),
        ('ServicePort == "http"', False),  # does not coerce: not equal, not an error
        ('ServicePort != "http"', True),
        ("Weight == 1.5", True),
        ('Weight == "1.5"', True),
        ("Weight != 2", True),
        ("Weight == -1.5", False),
        ("ServicePort is empty", False),  # scalars other than strings are never empty
        ('ServicePort matches "80"', False),  # matches only looks at strings
        ('ServicePort contains "80"', False),
    ],
)
def test_number_fields_compare_by_the_fields_type(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


def test_string_fields_compare_numbers_as_text() -> None:
    item = {"Version": "1.0", "Port": "8080"}
    assert matches("Version == 1.0", item)
    assert not matches("Version == 1", item)
    assert matches("Port == 8080", item)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("EnableTagOverride == false", True),
        ('EnableTagOverride == "false"', True),
        ("EnableTagOverride == False", True),
        ("EnableTagOverride == F", True),
        ("EnableTagOverride == 0", True),  # Go's strconv.ParseBool spellings
        ("EnableTagOverride == true", False),
        ("EnableTagOverride != true", True),
        ("Primary == TRUE", True),
        ("Primary == 1", True),
        ("Primary == yes", False),  # not a Go bool: not equal
        ("Primary != yes", True),
    ],
)
def test_bool_fields_take_go_parsebool_spellings(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('ServiceTags contains "primary"', True),
        ("ServiceTags contains canary", True),
        ('ServiceTags contains "prim"', False),  # element equality, not substring
        ('ServiceTags not contains "secondary"', True),
        ('ServiceTags not contains "v2"', False),
        ('"v2" in ServiceTags', True),
        ('"v3" not in ServiceTags', True),
        ("8443 in Ports", True),
        ('"8443" in Ports', True),  # elements are coerced one by one
        ("Ports contains 9000", False),
        ("ServiceTags is empty", False),
        ("ServiceTags is not empty", True),
        ("EmptyTags is empty", True),
        ("EmptyTags is not empty", False),
        ('EmptyTags contains "a"', False),
        ('ServiceTags == "primary"', False),  # equality is not defined on lists
        ('ServiceTags != "primary"', True),
        ('ServiceTags matches "prim"', False),
    ],
)
def test_list_fields_support_contains_in_and_emptiness(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('NodeMeta contains "os"', True),  # contains on a map tests its keys
        ('NodeMeta contains "linux"', False),
        ('"rack-1" in NodeMeta', True),
        ('"rack-2" not in NodeMeta', True),
        ("NodeMeta is not empty", True),
        ("EmptyMeta is empty", True),
        ("NodeMeta.os == linux", True),
        ('NodeMeta["os"] == "linux"', True),
        ('NodeMeta["rack-1"] == r1', True),
        ('NodeMeta["key with spaces"] == yes', True),
        ('NodeMeta[ "os.version" ] == 6', True),  # spaces are fine inside the brackets
        ("NodeMeta[`rack-1`] == r1", True),
        ("NodeMeta.OS == linux", False),  # keys are case-sensitive, as in Consul
        ('Service.Meta["version"] == "1.0"', True),
        ('Service["Meta"].version matches "^1\\\\."', True),
    ],
)
def test_map_fields_are_reached_by_dots_or_quoted_brackets(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


# --- values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "raw"),
    [
        ('A == "plain"', "plain"),
        ('A == "tab\\there"', "tab\there"),
        ('A == "quote \\" inside"', 'quote " inside'),
        ('A == "\\x41\\101\\u00e9\\U0001F600"', "AAé\U0001f600"),
        ("A == `raw \\n stays`", "raw \\n stays"),
        ('A == `has "quotes"`', 'has "quotes"'),
        ("A == passing", "passing"),
        ("A == foo.bar_1", "foo.bar_1"),  # a bare word is read like a selector
        ("A == -12.5", "-12.5"),
        ("A == 0", "0"),
        ('A=="tight"', "tight"),
    ],
)
def test_values_are_quoted_raw_or_bare(expression: str, raw: str) -> None:
    tree = parse(expression)
    assert isinstance(tree, Match)
    assert tree.value is not None
    assert tree.value.raw == raw


def test_quoted_bare_and_number_spellings_parse_to_equal_trees() -> None:
    assert parse('Status == "passing"') == parse("Status == passing") == parse("Status==`passing`")
    assert parse('Port == "8080"') == parse("Port == 8080")


@pytest.mark.parametrize(
    ("expression", "position", "reason"),
    [
        ('A == "abc', 5, "unterminated string literal"),
        ("A == `abc", 5, "unterminated string literal"),
        ('A == "a\\qb"', 7, "invalid escape sequence"),
        ('A == "\\x4"', 6, "invalid escape sequence"),
        ('A == "\\uD800"', 6, "invalid escape sequence"),  # surrogates are not characters
        ('A == "line\nbreak"', 10, "newline in string literal"),
        ("A == 80x", 5, "invalid number literal '80x'"),
        ("A == 007", 5, "invalid number literal"),
        ("A == 1.", 5, "invalid number literal"),
        ("A == 1e5", 5, "invalid number literal"),
    ],
)
def test_bad_literals_are_reported_where_they_start(
    expression: str, position: int, reason: str
) -> None:
    err = error(expression)
    assert err.position == position
    assert reason in err.reason


# --- precedence ---------------------------------------------------------------

T, F = 'Node == "web-1"', 'Node == "nope"'


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (f"{T} or {T} and {F}", True),  # and binds tighter than or
        (f"({T} or {T}) and {F}", False),
        (f"{F} and {T} or {T}", True),
        (f"{F} and ({T} or {T})", False),
        (f"not {T} and {F}", False),  # not binds tighter than and
        (f"not ({T} and {F})", True),
        (f"not {F} or {F}", True),
        (f"not not {T}", True),
        (f"not not not {T}", False),
        (f"((({T})))", True),
        (f"{T} and not ({F} or {F})", True),
    ],
)
def test_not_binds_tighter_than_and_which_binds_tighter_than_or(
    expression: str, expected: bool
) -> None:
    assert matches(expression) is expected


def test_the_docs_precedence_example_parses_like_its_parenthesised_form() -> None:
    # "<Expression 1> and not <Expression 2> or <Expression 3>" is
    # "( <Expression 1> and (not <Expression 2> )) or <Expression 3>".
    plain = parse("A == 1 and not B == 2 or C == 3")
    grouped = parse("( A == 1 and (not B == 2 )) or C == 3")
    assert plain == grouped
    a, b, c = (
        Match(MatchOp.EQUAL, Selector((n,)), Value(v))
        for n, v in [("A", "1"), ("B", "2"), ("C", "3")]
    )
    assert plain == Or((And((a, Not(b))), c))


def test_printed_trees_parse_back_to_the_same_tree() -> None:
    for expression in [
        'not (A == 1 or B != "x y") and "t" in Tags or Meta["rack-1"] is not empty',
        "not A matches `^a\\.` and (B is empty or (C not contains d and E.F != g))",
        '"v" not in Service.Tags or not not X == true',
    ]:
        tree = parse(expression)
        assert parse(str(tree)) == tree


def test_and_or_chains_are_flat_and_double_negation_cancels() -> None:
    tree = parse("A == 1 or (B == 2 or C == 3)")
    assert isinstance(tree, Or)
    assert len(tree.operands) == 3
    assert parse("not (not A == 1)") == parse("A == 1")


# --- lists on the path --------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Checks.Status == passing", True),  # some check is passing
        ("Checks.Status == critical", True),
        ("Checks.Status == warning", False),
        ("Checks.Status != passing", True),  # some check is not passing
        ("not Checks.Status != passing", False),  # Consul's "all checks passing"
        ('Checks.CheckID matches "^service:"', True),
        ('Checks.ServiceTags contains "primary"', True),  # list inside list elements
        ("Checks.ServiceTags is empty", True),  # serfHealth has none
        ("Checks.Output is empty", True),  # missing in every check
        ("Checks.Output is not empty", False),
    ],
)
def test_a_selector_through_a_list_matches_if_any_element_matches(
    expression: str, expected: bool
) -> None:
    assert matches(expression) is expected


def test_all_passing_idiom_and_empty_lists() -> None:
    healthy = {"Checks": [{"Status": "passing"}, {"Status": "passing"}]}
    no_checks: dict[str, Any] = {"Checks": []}
    assert matches("not Checks.Status != passing", healthy)
    assert not matches("Checks.Status != passing", healthy)
    # Over an empty list every operator is false (nothing to match), negated ones too.
    for expression in ["Checks.Status == passing", "Checks.Status != passing", "Checks.X is empty"]:
        assert not matches(expression, no_checks)
    assert matches("not Checks.Status != passing", no_checks)


def test_lists_of_lists_are_searched_at_every_level() -> None:
    item = {"Groups": [[{"Name": "a"}], [{"Name": "b"}, {"Name": "c"}]]}
    assert matches("Groups.Name == c", item)
    assert not matches("Groups.Name == d", item)


# --- missing fields -----------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "when_missing"),
    [
        ("== x", False),
        ("!= x", True),
        ('contains "x"', False),
        ('not contains "x"', True),
        ('matches "."', False),
        ('not matches "."', True),
        ("is empty", True),
        ("is not empty", False),
    ],
)
@pytest.mark.parametrize(
    "selector",
    [
        "Absent",  # no such key
        "TaggedAddresses",  # JSON null
        "TaggedAddresses.lan",  # through a null
        "NodeMeta.absent",  # missing map key
        "Node.Sub",  # through a string
        "Service.Nope.Deeper",
    ],
)
def test_missing_fields_fail_positive_and_pass_negated_operators(
    selector: str, operator: str, when_missing: bool
) -> None:
    assert matches(f"{selector} {operator}") is when_missing


def test_value_in_missing_selector_is_false_and_not_in_is_true() -> None:
    assert not matches('"x" in Absent')
    assert matches('"x" not in Absent')


# --- schema -------------------------------------------------------------------

SCHEMA: dict[str, type[object]] = {
    "Node": str,
    "ServicePort": int,
    "Weight": float,
    "Primary": bool,
    "ServiceTags": list,
    "NodeMeta": dict,
    "NodeMeta.*": str,
    "Checks": list,
    "Checks.Status": str,
}


def test_schema_accepts_known_selectors_and_wildcard_map_keys() -> None:
    keep = compile_filter(
        'Node == "web-1" and NodeMeta["rack-1"] == r1 and Checks.Status == passing '
        'and ServicePort == "8080" and Primary == true and "v2" in ServiceTags',
        SCHEMA,
    )
    assert keep(ITEM)
    assert not keep({**ITEM, "Primary": False})


def test_schema_rejects_unknown_selectors_like_consul() -> None:
    err = error('Node == "a" and Foo == bar', SCHEMA)
    assert err.reason == 'Selector "Foo" is not valid'
    assert err.position == 16
    assert str(err) == (
        'Failed to create boolean expression evaluator: 1:17 (16): Selector "Foo" is not valid'
    )
    assert error('NodeMeta.os.deeper == "x"', SCHEMA).reason == (
        'Selector "NodeMeta.os.deeper" is not valid'
    )
    assert error('"x" in Checks.Output', SCHEMA).position == 7
    assert error("x in Nope", SCHEMA).reason == 'Selector "Nope" is not valid'


@pytest.mark.parametrize(
    ("expression", "position", "reason"),
    [
        ('ServicePort matches "8"', 0, 'Invalid match operator "matches" for selector'),
        ("ServicePort is empty", 0, "of type int"),
        ('ServiceTags == "a"', 0, 'Invalid match operator "==" for selector "ServiceTags"'),
        ("NodeMeta matches x", 0, "of type dict"),
        ('ServicePort == "http"', 15, 'Value "http" is not a valid int for selector'),
        ("ServicePort == 1.5", 15, "is not a valid int"),
        ("Weight == abc", 10, "is not a valid float"),
        ("Primary == yes", 11, 'Value "yes" is not a valid bool for selector "Primary"'),
    ],
)
def test_schema_rejects_operators_and_values_the_type_cannot_take(
    expression: str, position: int, reason: str
) -> None:
    err = error(expression, SCHEMA)
    assert err.position == position
    assert reason in err.reason


# --- syntax errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "position", "reason"),
    [
        ("Foo == 1 Bar", 9, "expected 'and', 'or' or end of input, found 'Bar'"),
        ("Foo == 1 AND Bar == 2", 9, "found 'AND'"),  # keywords are lower-case
        ("Foo ==", 6, "expected a value (quoted string, number or bare word), found end"),
        ('Foo == "x" and', 14, "expected a selector, a value or '(', found end of input"),
        ("Foo = 1", 4, "unexpected character '=' (equality is '==')"),
        ("Foo == 'x'", 7, "unexpected character"),
        ("Foo bar", 4, "expected an operator after selector Foo"),
        ("Foo", 3, "expected an operator after selector Foo"),
        ("Foo is full", 7, "expected 'empty' or 'not empty' after 'is', found 'full'"),
        ("Foo not equals 1", 4, "expected an operator"),
        ('"x" == Foo', 4, "expected 'in' or 'not in' after value \"x\""),
        ('"x" in 8', 7, "expected a selector after 'in', found number 8"),
        ("(Foo == 1", 9, "unmatched '(' at offset 0"),
        ("Foo == 1)", 8, "unmatched ')'"),
        ("()", 1, "expected a selector"),
        ("", 0, "found end of input"),
        ("   ", 3, "found end of input"),
        ("and == 1", 0, "expected a selector, a value or '(', found 'and'"),
        ("Foo == or", 7, "expected a value"),
        ("Meta[foo] == 1", 5, "expected a quoted map key after '[', found 'foo'"),
        ('Meta["a" == 1', 9, "expected ']' after map key"),
        ("Meta. os == 1", 6, "expected a field name after '.'"),
        ("Meta .os == 1", 5, "expected an operator after selector Meta"),
        ("Meta.0 == 1", 5, "expected a field name after '.', found number 0"),
        ("_x == 1", 0, "unexpected character '_'"),
        ('Node matches "("', 13, "invalid regular expression '('"),
    ],
)
def test_syntax_errors_point_at_the_offending_token(
    expression: str, position: int, reason: str
) -> None:
    err = error(expression)
    assert err.position == position
    assert reason in err.reason
    assert f"({position}): " in str(err)


def test_errors_carry_line_and_column_like_consul() -> None:
    err = error('Node == "a" and\n  Foo ?? 1')
    assert (err.line, err.column, err.position) == (2, 7, 22)
    assert str(err).startswith("Failed to create boolean expression evaluator: 2:7 (22): ")


def test_expressions_over_4_kib_are_rejected() -> None:
    clause = 'Node == "web-1" or '
    fits = clause * ((MAX_EXPRESSION_BYTES - 20) // len(clause)) + 'Node == "x"'
    assert len(fits.encode()) <= MAX_EXPRESSION_BYTES
    assert matches(fits)
    too_long = 'Node == "' + "x" * MAX_EXPRESSION_BYTES + '"'
    err = error(too_long)
    assert "over the 4096-byte limit" in err.reason
    assert err.position == MAX_EXPRESSION_BYTES
    # The limit counts UTF-8 bytes, as a query string does.
    assert "byte limit" in error('Node == "' + "é" * (MAX_EXPRESSION_BYTES // 2) + '"').reason


def test_nesting_is_bounded_instead_of_overflowing_the_stack() -> None:
    ok = "(" * MAX_NESTING + "A == 1" + ")" * MAX_NESTING
    assert matches(ok, {"A": 1})
    err = error("(" * (MAX_NESTING + 1) + "A == 1" + ")" * (MAX_NESTING + 1))
    assert err.position == MAX_NESTING
    assert "nest deeper" in err.reason
    # Long flat chains and long runs of "not" need no recursion at all.
    assert matches("not " * 1001 + "A == 2", {"A": 1})
    assert matches(" and ".join(["A == 1"] * 300), {"A": 1})
    assert matches(" or ".join(["A == 2"] * 300 + ["A == 1"]), {"A": 1})


# --- Consul's documented examples ---------------------------------------------

# From https://developer.hashicorp.com/consul/api-docs/features/filtering#filtering-examples
AGENT_SERVICES: dict[str, dict[str, Any]] = {
    "redis1": {
        "ID": "redis1", "Service": "redis", "Tags": ["primary", "production"],
        "Meta": {"env": "production", "foo": "bar"}, "Port": 1234, "Address": "",
        "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False,
    },
    "redis2": {
        "ID": "redis2", "Service": "redis", "Tags": ["secondary", "production"],
        "Meta": {"env": "production", "foo": "bar"}, "Port": 1235, "Address": "",
        "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False,
    },
    "redis3": {
        "ID": "redis3", "Service": "redis", "Tags": ["primary", "qa"],
        "Meta": {"env": "qa"}, "Port": 1234, "Address": "",
        "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False,
    },
}  # fmt: skip


def catalog_service(node: str, os: str, tags: list[str], meta: dict[str, str]) -> dict[str, Any]:
    return {
        "ID": f"id-{node}", "Node": node, "Address": "198.18.0.1", "Datacenter": "dc1",
        "TaggedAddresses": None, "NodeMeta": {"arch": "i386", "os": os},
        "ServiceKind": "", "ServiceID": "api-internal", "ServiceName": "api-internal",
        "ServiceTags": tags, "ServiceAddress": "", "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceMeta": meta, "ServicePort": 9090, "ServiceEnableTagOverride": False,
        "ServiceProxy": {}, "ServiceConnect": {}, "CreateIndex": 30, "ModifyIndex": 30,
    }  # fmt: skip


CATALOG_SERVICE = [
    catalog_service("node-1", "darwin", ["tag"], {"environment": "qa"}),
    catalog_service("node-2", "linux", ["test", "tag"], {"environment": "production"}),
    catalog_service("node-4", "freebsd", [], {"environment": "qa"}),
    catalog_service("web-7", "linux", ["canary"], {"version": "1.0"}),
]

HEALTH_NODE = [
    {"Node": "node-1", "CheckID": "node-health", "Name": "Node level check",
     "Status": "critical", "ServiceID": "", "ServiceName": "", "ServiceTags": []},
    {"Node": "node-1", "CheckID": "svc-web-health", "Name": "Service level check - web",
     "Status": "warning", "ServiceID": "", "ServiceName": "web", "ServiceTags": []},
]  # fmt: skip


def health_entry(node: str, tags: list[str], statuses: list[str]) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": "10.0.0.1", "Meta": {"os": "linux"}},
        "Service": {"ID": "web", "Service": "web", "Tags": tags, "Port": 8080, "Meta": {}},
        "Checks": [
            {"Node": node, "CheckID": f"check-{i}", "Status": status, "ServiceName": "web"}
            for i, status in enumerate(statuses)
        ],
    }


HEALTH_SERVICE = [
    health_entry("web-1", ["primary"], ["passing", "passing"]),
    health_entry("web-2", ["secondary"], ["passing", "critical"]),
    health_entry("db-1", ["primary", "v2"], ["warning"]),
]


def nodes(items: list[dict[str, Any]], expression: str) -> list[str]:
    def name(item: dict[str, Any]) -> str:
        node = item["Node"]
        return node["Node"] if isinstance(node, dict) else str(node)

    return [name(item) for item in apply_filter(items, expression)]


def test_docs_agent_services_example_filters_by_meta() -> None:
    # /v1/agent/services answers a map keyed by service ID; the filter sees the values.
    pairs = apply_filter(AGENT_SERVICES.items(), 'Meta.env == "qa"', getter=lambda kv: kv[1])
    assert [key for key, _ in pairs] == ["redis3"]
    services = apply_filter(AGENT_SERVICES.values(), 'Tags contains "primary" and Port == 1234')
    assert [s["ID"] for s in services] == ["redis1", "redis3"]
    services = apply_filter(AGENT_SERVICES.values(), "Weights.Passing == 1 and Meta.foo is empty")
    assert [s["ID"] for s in services] == ["redis3"]


def test_docs_catalog_and_health_node_examples() -> None:
    assert nodes(CATALOG_SERVICE, 'NodeMeta.os == "linux"') == ["node-2", "web-7"]
    checks = apply_filter(HEALTH_NODE, 'ServiceName != ""')
    assert [c["CheckID"] for c in checks] == ["svc-web-health"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('ServiceTags contains "tag"', ["node-1", "node-2"]),
        ('ServiceMeta.version == "1.0"', ["web-7"]),
        ('Node matches "^web-"', ["web-7"]),
        ("NodeMeta.os == linux and ServiceTags contains canary", ["web-7"]),
        ('ServiceMeta.environment == qa or "test" in ServiceTags', ["node-1", "node-2", "node-4"]),
        ("ServiceTags is empty", ["node-4"]),
        ("TaggedAddresses is empty", ["node-1", "node-2", "node-4", "web-7"]),
        ('"i386" in NodeMeta.arch and NodeMeta.os != darwin', ["node-2", "node-4", "web-7"]),
    ],
)
def test_catalog_service_examples(expression: str, expected: list[str]) -> None:
    assert nodes(CATALOG_SERVICE, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Service.Tags contains "primary"', ["web-1", "db-1"]),
        ("Checks.Status != passing", ["web-2", "db-1"]),
        ("not Checks.Status != passing", ["web-1"]),
        ('Checks.Status == critical or "v2" in Service.Tags', ["web-2", "db-1"]),
        ('Node.Node matches "^web-" and Checks.Status != passing', ["web-2"]),
        ('Service.Port == 8080 and Node.Meta.os == "linux"', ["web-1", "web-2", "db-1"]),
    ],
)
def test_health_service_examples(expression: str, expected: list[str]) -> None:
    assert nodes(HEALTH_SERVICE, expression) == expected


# --- apply_filter -------------------------------------------------------------


def test_no_filter_keeps_every_item_in_a_new_list() -> None:
    items = [{"A": 1}, {"A": 2}]
    for expression in (None, ""):
        kept = apply_filter(items, expression)
        assert kept == items
        assert kept is not items


def test_apply_filter_rejects_a_bad_expression_before_reading_items() -> None:
    def items() -> Any:
        raise AssertionError("items were read")
        yield  # pragma: no cover

    with pytest.raises(FilterError):
        apply_filter(items(), "A ==")


def test_a_compiled_filter_is_reusable_and_ignores_non_mapping_items() -> None:
    keep = compile_filter("A == 1")
    assert [keep(x) for x in ({"A": 1}, {"A": 2}, None, "A", [{"A": 1}])] == [
        True, False, False, False, True,
    ]  # fmt: skip


# --- performance --------------------------------------------------------------


def test_a_compiled_filter_over_10000_items_keeps_exactly_the_matching_ones() -> None:
    """(Its speed is bench/filter_bench.py's figure; tests do not time.)"""
    items = filter_bench.rows(10_000)
    keep = compile_filter(filter_bench.EXPRESSION)
    kept = [item for item in items if keep(item)]
    expected = [item for item in items if filter_bench._baseline(item)]
    assert kept == expected
    assert 100 < len(kept) < 2000


def test_regex_is_linear_time_like_go_re2() -> None:
    """A pattern that makes a backtracking engine run for minutes answers at
    once: filters come from the network, so regexes use RE2 as Go does
    (bench/filter_bench.py prints the time)."""
    items = [{"Node": "a" * 40 + "!"}]
    assert apply_filter(items, 'Node matches "(a+)+$"') == []
    assert type(_compile_regex("(a+)+$")).__module__ == "re2"


def test_regex_features_re2_lacks_are_rejected_at_parse_time() -> None:
    with pytest.raises(FilterError) as info:
        parse('Node matches "(?<=x)y"')
    assert "invalid regular expression" in str(info.value)


def test_filter_bench_prints_the_timings_the_tests_do_not_assert(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert filter_bench.main(["--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^filter 10000 rows: [\d.]+ ms .* ratio [\d.]+x$", out, re.M), out
    assert re.search(r'^regex "\(a\+\)\+\$" on 41 chars: [\d.]+ ms', out, re.M), out
