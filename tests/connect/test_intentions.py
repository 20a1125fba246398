"""Intention matching: precedence, L7-as-deny, default policy, and the index.

The cases use registry records as the registry stores them (precedence
computed once on write, ``with_precedence``), which is what the agent hands
to ``decide`` in-process; ``as_received`` turns them into connect's own
``Intention``, what the proxy builds from the API's JSON. Both must decide
alike.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect.intentions import Decision, Intention, IntentionIndex, IntentionLike, decide
from registry.records import Intention as IntentionRecord


def as_received(record: IntentionRecord) -> Intention:
    """The intention as the proxy gets it over the API (``Precedence`` included)."""
    return Intention(
        id=record.id,
        source_name=record.source_name,
        destination_name=record.destination_name,
        source_ns=record.source_ns,
        destination_ns=record.destination_ns,
        action=record.action,
        permissions=record.permissions,
        precedence=record.precedence,
    )


def stored(record: IntentionRecord) -> IntentionRecord:
    return record


KINDS: dict[str, Callable[[IntentionRecord], IntentionLike]] = {
    "registry-record": stored,
    "api-json": as_received,
}


def ixn(
    source: str,
    destination: str,
    action: str = "allow",
    *,
    l7: bool = False,
    id: str | None = None,
    source_ns: str = "default",
    destination_ns: str = "default",
) -> IntentionRecord:
    return IntentionRecord(
        id=id or f"{source}->{destination}",
        source_name=source,
        destination_name=destination,
        source_ns=source_ns,
        destination_ns=destination_ns,
        action=action,
        permissions=({"Action": "allow", "HTTP": {"PathPrefix": "/"}},) if l7 else (),
    ).with_precedence()


# (intentions, source, destination, default_allow, expected allowed, expected winning id)
CASES = [
    ([], "web", "api", True, True, None),
    ([], "web", "api", False, False, None),
    ([ixn("web", "api")], "web", "api", False, True, "web->api"),
    ([ixn("web", "api", "deny")], "web", "api", True, False, "web->api"),
    ([ixn("web", "api")], "db", "api", False, False, None),
    ([ixn("web", "api")], "web", "db", False, False, None),
    # exact source beats wildcard source
    ([ixn("*", "api", "deny"), ixn("web", "api")], "web", "api", False, True, "web->api"),
    ([ixn("*", "api", "allow"), ixn("web", "api", "deny")], "web", "api", True, False, "web->api"),
    ([ixn("*", "api", "deny"), ixn("web", "api")], "db", "api", True, False, "*->api"),
    # exact destination beats wildcard destination, whatever the source
    ([ixn("web", "*", "allow"), ixn("*", "api", "deny")], "web", "api", True, False, "*->api"),
    ([ixn("web", "*", "deny"), ixn("*", "*", "allow")], "web", "api", True, False, "web->*"),
    ([ixn("*", "*", "allow")], "x", "y", False, True, "*->*"),
    ([ixn("*", "*", "deny")], "x", "y", True, False, "*->*"),
    # an L7 intention decides deny for an L4 connection, even if its action is allow
    ([ixn("web", "api", l7=True), ixn("*", "*")], "web", "api", True, False, "web->api"),
    ([ixn("*", "api", l7=True)], "web", "api", True, False, "*->api"),
    # namespaces: another namespace does not match; a wildcard namespace does
    ([ixn("web", "api", source_ns="team")], "web", "api", False, False, None),
    ([ixn("web", "api", destination_ns="*")], "web", "api", False, True, "web->api"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("records", "src", "dst", "default", "allowed", "winner"), CASES)
def test_decide_matches_consuls_precedence_table(
    kind: str,
    records: list[IntentionRecord],
    src: str,
    dst: str,
    default: bool,
    allowed: bool,
    winner: str | None,
) -> None:
    intentions = [KINDS[kind](r) for r in records]
    decision = decide(intentions, src, dst, default_allow=default)
    assert (decision.allowed, decision.intention_id) == (allowed, winner)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("records", "src", "dst", "default", "allowed", "winner"), CASES)
def test_index_matches_decide_on_the_table(
    kind: str,
    records: list[IntentionRecord],
    src: str,
    dst: str,
    default: bool,
    allowed: bool,
    winner: str | None,
) -> None:
    intentions = [KINDS[kind](r) for r in records]
    decision = IntentionIndex(intentions).decide(src, dst, default_allow=default)
    assert decision == decide(intentions, src, dst, default_allow=default)
    assert (decision.allowed, decision.intention_id) == (allowed, winner)


def test_reasons_follow_consuls_authorize_wording() -> None:
    allow = decide([ixn("web", "api", id="abc")], "web", "api", default_allow=False)
    assert allow == Decision(
        True, 'Matched L4 intention: "web" => "api" (ID: abc, Precedence: 9, Action: ALLOW)', "abc"
    )
    deny = decide([ixn("*", "api", "deny", id="d1")], "web", "api", default_allow=True)
    assert deny.reason == 'Matched L4 intention: "*" => "api" (ID: d1, Precedence: 8, Action: DENY)'
    l7 = decide([ixn("web", "*", l7=True, id="l7")], "web", "api", default_allow=True)
    assert l7.reason == 'Matched L7 intention: "web" => "*" (ID: l7, Precedence: 6, Permissions: 1)'
    default = decide([], "web", "api", default_allow=False)
    assert default == Decision(
        False, "Default behavior configured by connect.default_intention_policy (deny)", None
    )
    assert decide([], "web", "api", default_allow=True).reason.endswith("(allow)")


def test_equal_precedence_ties_break_lexicographically_then_by_id() -> None:
    # Two intentions for the same pair cannot be stored, but decide() must
    # still be deterministic if handed both.
    both = [ixn("web", "api", "deny", id="b"), ixn("web", "api", "allow", id="a")]
    assert decide(both, "web", "api", default_allow=False).intention_id == "a"
    assert decide(reversed(both), "web", "api", default_allow=False).intention_id == "a"
    assert IntentionIndex(both).decide("web", "api", default_allow=False).intention_id == "a"


def test_evaluation_uses_the_precedence_carried_on_the_intention() -> None:
    # connect never recomputes precedence (the registry does, once, on
    # write): a wildcard carrying a higher precedence wins over an exact match.
    wild = Intention(id="w", source_name="*", destination_name="api", action="allow", precedence=99)
    exact = as_received(ixn("web", "api", "deny"))
    assert exact.precedence == 9
    assert decide([wild, exact], "web", "api", default_allow=False).intention_id == "w"
    assert IntentionIndex([exact, wild]).decide("web", "api", default_allow=False).allowed
    assert "Precedence: 99" in decide([wild], "web", "api", default_allow=False).reason


def test_index_reports_size_and_best_intention() -> None:
    items = [ixn("web", "api"), ixn("*", "*", "deny")]
    index = IntentionIndex(items)
    assert len(index) == 2
    assert index.best("web", "api") is items[0]
    assert index.best("db", "cache") is items[1]
    assert IntentionIndex([]).best("web", "api") is None


NAMES = st.sampled_from(["web", "api", "db", "*"])
NAMESPACES = st.sampled_from(["default", "default", "team", "*"])
INTENTIONS = st.builds(
    IntentionRecord,
    id=st.text(alphabet="abc", min_size=1, max_size=2),
    source_name=NAMES,
    destination_name=NAMES,
    source_ns=NAMESPACES,
    destination_ns=NAMESPACES,
    action=st.sampled_from(["allow", "deny"]),
    permissions=st.sampled_from([(), ({"Action": "allow"},)]),
).map(IntentionRecord.with_precedence)


@settings(max_examples=300, deadline=None)
@given(
    intentions=st.lists(INTENTIONS, max_size=12),
    source=st.sampled_from(["web", "api", "db", "other"]),
    destination=st.sampled_from(["web", "api", "db", "other"]),
    source_ns=st.sampled_from(["default", "team"]),
    destination_ns=st.sampled_from(["default", "team"]),
    default_allow=st.booleans(),
)
def test_index_agrees_with_decide_on_random_intentions(
    intentions: list[IntentionRecord],
    source: str,
    destination: str,
    source_ns: str,
    destination_ns: str,
    default_allow: bool,
) -> None:
    kwargs = {"source_ns": source_ns, "destination_ns": destination_ns}
    expected = decide(intentions, source, destination, default_allow=default_allow, **kwargs)
    got = IntentionIndex(intentions).decide(
        source, destination, default_allow=default_allow, **kwargs
    )
    assert got == expected
