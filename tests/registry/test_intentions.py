"""Intentions: precedence, uniqueness, match order and checks."""

from __future__ import annotations

import pytest

from registry import queries, shapes
from registry.commands import IntentionDelete, IntentionUpsert
from registry.errors import ErrorCode, ValidationError
from registry.records import Intention

from .builders import Log


def ixn(id: str, src: str, dst: str, action: str = "allow", **kw: object) -> IntentionUpsert:
    return IntentionUpsert(
        intention=Intention(id, source_name=src, destination_name=dst, action=action, **kw)  # type: ignore[arg-type]
    )


# Consul docs, "Intentions > Precedence and match order"
# (https://developer.hashicorp.com/consul/docs/connect/intentions#precedence-and-match-order),
# namespaces exact (OSS): the destination's exactness dominates.
@pytest.mark.parametrize(
    ("src", "dst", "expected"),
    [("web", "db", 9), ("*", "db", 8), ("web", "*", 6), ("*", "*", 5)],
)
def test_precedence_table(src: str, dst: str, expected: int) -> None:
    stored = Intention("x", source_name=src, destination_name=dst).with_precedence()
    assert stored.precedence == expected


def test_precedence_with_wildcard_namespaces_follows_consul_formula() -> None:
    i = Intention("x", source_name="*", destination_name="*", source_ns="*", destination_ns="*")
    assert i.with_precedence().precedence == 1


def test_upsert_computes_precedence_and_keeps_create_index(log: Log) -> None:
    log.ok(ixn("i1", "web", "db"))
    log.now += 5
    log.ok(ixn("i1", "web", "db", action="deny"))
    idx, got = queries.intention_get(log.store, None, "i1")
    assert got is not None and idx == 2
    assert (got.precedence, got.action, got.create_index, got.modify_index) == (9, "deny", 1, 2)
    assert got.updated_at - got.created_at == 5
    body = shapes.intention_json(got)
    assert body["SourceName"] == "web" and body["Precedence"] == 9
    assert body["CreatedAt"].endswith("Z")


def test_duplicate_source_destination_is_refused(log: Log) -> None:
    log.ok(ixn("i1", "web", "db"))
    assert log.apply(ixn("i2", "web", "db")).error is ErrorCode.CONFLICT


def test_match_orders_by_precedence(log: Log) -> None:
    log.ok(ixn("a", "*", "*", action="deny"))
    log.ok(ixn("b", "web", "db"))
    log.ok(ixn("c", "*", "db", action="deny"))
    log.ok(ixn("d", "web", "*"))
    log.ok(ixn("e", "api", "cache"))
    _, found = queries.intention_match(log.store, None, "destination", "db")
    assert [i.id for i in found] == ["b", "c", "d", "a"]  # web -> * applies to db too
    _, found = queries.intention_match(log.store, None, "source", "web")
    assert [i.id for i in found] == ["b", "c", "d", "a"]  # 9, 8, 6, 5
    _, listed = queries.intention_list(log.store, None)
    assert [i.precedence for i in listed] == [9, 9, 8, 6, 5]


def test_check_uses_most_precise_match_then_default(log: Log) -> None:
    log.ok(ixn("a", "*", "db", action="deny"))
    log.ok(ixn("b", "web", "db"))
    assert queries.intention_check(log.store, None, "web", "db", False)[1] is True
    assert queries.intention_check(log.store, None, "api", "db", True)[1] is False
    assert queries.intention_check(log.store, None, "api", "cache", True)[1] is True
    assert queries.intention_check(log.store, None, "api", "cache", False)[1] is False


def test_l7_permissions_count_as_deny_for_l4_check(log: Log) -> None:
    perms = ({"Action": "allow", "HTTP": {"PathPrefix": "/"}},)
    log.ok(ixn("p", "web", "db", action="", permissions=perms))
    assert queries.intention_check(log.store, None, "web", "db", True)[1] is False
    assert "Permissions" in shapes.intention_json(queries.intention_get(log.store, None, "p")[1])  # type: ignore[arg-type]


def test_exact_and_delete(log: Log) -> None:
    log.ok(ixn("a", "web", "db"))
    assert queries.intention_exact(log.store, None, "web", "db")[1].id == "a"  # type: ignore[union-attr]
    assert queries.intention_exact(log.store, None, "*", "db")[1] is None
    log.ok(IntentionDelete(id="a"))
    assert log.apply(IntentionDelete(id="a")).error is ErrorCode.NOT_FOUND
    assert queries.intention_list(log.store, None) == (2, [])


def test_validation() -> None:
    for bad, field in [
        (Intention("i", source_name="we*", destination_name="db", action="allow"), "SourceName"),
        (Intention("i", source_name="web", destination_name="db", action="maybe"), "Action"),
        (
            Intention(
                "i",
                source_name="w",
                destination_name="d",
                action="allow",
                permissions=({"Action": "allow"},),
            ),
            "Action",
        ),
    ]:
        with pytest.raises(ValidationError) as err:
            IntentionUpsert(intention=bad).validate()
        assert err.value.field == field


def test_old_table_records_from_a_snapshot_migrate_once(log: Log) -> None:
    """Records of the pre-1.9 table (here restored from a snapshot) become
    sources with their LegacyID; a second migration changes nothing."""
    from registry.commands import IntentionsMigrate
    from registry.state.store import StateStore

    old = StateStore()
    tx = old.begin(7)
    old.intentions.intentions.put(tx, Intention("i1", "web", "db", action="allow", meta={"a": "b"}))
    tx.touch("intentions")
    tx.commit()
    log.store.restore(old.snapshot())
    log.index = 7
    assert queries.intention_list(log.store, None)[1] == []
    log.ok(IntentionsMigrate())
    _, found = queries.intention_get(log.store, None, "i1")
    assert found is not None and (found.source_name, found.meta) == ("web", {"a": "b"})
    entry = log.store.config.entries.get(("service-intentions", "db"))
    assert entry is not None and entry.body["Sources"][0]["LegacyID"] == "i1"
    assert not list(log.store.intentions.intentions.values())
    log.ok(IntentionsMigrate())
    assert log.store.config.entries.get(("service-intentions", "db")) == entry


def test_delete_by_pair_removes_the_source_and_then_the_entry(log: Log) -> None:
    log.ok(ixn("i1", "web", "db"))
    log.ok(
        IntentionUpsert(
            intention=Intention("", source_name="api", destination_name="db", action="deny")
        )
    )
    assert log.apply(IntentionDelete(source="cache", destination="db")).error is ErrorCode.NOT_FOUND
    log.ok(IntentionDelete(source="api", destination="db"))
    assert [i.source_name for i in queries.intention_list(log.store, None)[1]] == ["web"]
    log.ok(IntentionDelete(id="i1"))
    assert log.store.config.entries.get(("service-intentions", "db")) is None
