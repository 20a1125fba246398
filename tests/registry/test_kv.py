"""KV semantics (Consul /v1/kv docs and state/kvs.go)."""

from __future__ import annotations

import pytest

from registry import queries, shapes
from registry.commands import MAX_KV_VALUE, KVRequest, TombstoneReap
from registry.errors import ErrorCode, ValidationError

from .builders import Log


def put(log: Log, key: str, value: bytes = b"v", **kw: object) -> bool:
    return bool(log.apply(KVRequest(op=kw.pop("op", "set"), key=key, value=value, **kw)))  # type: ignore[arg-type]


def test_set_and_get_with_indexes_and_flags(log: Log) -> None:
    assert put(log, "a/b", b"1", flags=42)
    assert put(log, "a/b", b"2")
    idx, entry = queries.kv_get(log.store, None, "a/b")
    assert entry is not None and idx == 2
    assert (entry.value, entry.flags, entry.create_index, entry.modify_index) == (b"2", 0, 1, 2)
    assert shapes.kv_json(entry)["Value"] == "Mg=="


def test_cas_zero_is_create_only(log: Log) -> None:
    assert put(log, "k", op="cas", cas=0)
    assert not put(log, "k", b"x", op="cas", cas=0)
    assert queries.kv_get(log.store, None, "k")[1].value == b"v"  # type: ignore[union-attr]


def test_cas_requires_matching_modify_index(log: Log) -> None:
    put(log, "k")
    result = log.apply(KVRequest(op="cas", key="k", value=b"x", cas=7))
    assert not result and result.error is ErrorCode.CAS_CONFLICT
    assert put(log, "k", b"x", op="cas", cas=1)
    assert queries.kv_get(log.store, None, "k")[1].value == b"x"  # type: ignore[union-attr]


def test_delete_leaves_tombstone_so_index_moves(log: Log) -> None:
    put(log, "a/1")
    put(log, "b/1")
    assert put(log, "a/1", op="delete")
    idx, entry = queries.kv_get(log.store, None, "a/1")
    assert entry is None and idx == 3
    idx, entries = queries.kv_list(log.store, None, "a/")
    assert entries == [] and idx == 3
    assert queries.kv_list(log.store, None, "b/")[0] == 2


def test_delete_missing_key_changes_nothing(log: Log) -> None:
    assert put(log, "nope", op="delete")
    assert log.store.indexes == {}


def test_delete_cas(log: Log) -> None:
    put(log, "k")
    assert not put(log, "k", op="delete-cas", cas=9)
    assert queries.kv_get(log.store, None, "k")[1] is not None
    assert put(log, "k", op="delete-cas", cas=1)
    assert queries.kv_get(log.store, None, "k")[1] is None
    assert put(log, "k", op="delete-cas", cas=1)  # missing key: Consul answers true


def test_delete_tree_removes_prefix_only(log: Log) -> None:
    for key in ("app/a", "app/b/c", "apple", "other"):
        put(log, key)
    assert put(log, "app/", op="delete-tree")
    _, keys = queries.kv_keys(log.store, None, "")
    assert keys == ["apple", "other"]
    assert queries.kv_list(log.store, None, "app/")[0] == 5


def test_list_is_sorted_and_keys_roll_up_at_separator(log: Log) -> None:
    for key in ("web/b", "web/a/x", "web/a/y", "web/c/z", "webz"):
        put(log, key)
    _, entries = queries.kv_list(log.store, None, "web/")
    assert [e.key for e in entries] == ["web/a/x", "web/a/y", "web/b", "web/c/z"]
    _, keys = queries.kv_keys(log.store, None, "web/", "/")
    assert keys == ["web/a/", "web/b", "web/c/"]


def test_value_over_512_kib_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as err:
        KVRequest(op="set", key="k", value=b"x" * (MAX_KV_VALUE + 1)).validate()
    assert err.value.field == "Value"
    KVRequest(op="set", key="k", value=b"x" * MAX_KV_VALUE).validate()


def test_fsm_refuses_invalid_command_as_result(log: Log) -> None:
    result = log.apply(KVRequest(op="set", key="", value=b""))
    assert not result and result.error is ErrorCode.INVALID and "Key" in result.message


def test_tombstone_reap_drops_old_tombstones(log: Log) -> None:
    put(log, "a")
    put(log, "a", op="delete")
    put(log, "b")
    put(log, "b", op="delete")
    log.ok(TombstoneReap(until_index=2))
    assert [t.key for t in log.store.kv.tombstones.values()] == ["b"]
    # the get index falls back to the table index, which never goes backwards
    assert queries.kv_get(log.store, None, "a")[0] == 5


def test_set_keeps_holder_and_lock_index(log: Log) -> None:
    from registry.commands import SessionCreate

    from .builders import reg

    log.ok(reg("n1"))
    sid = "11111111-2222-3333-4444-555555555555"
    log.ok(SessionCreate(id=sid, node="n1", node_checks=()))
    assert put(log, "lock", op="lock", session=sid)
    assert put(log, "lock", b"new")
    _, entry = queries.kv_get(log.store, None, "lock")
    assert entry is not None and (entry.session, entry.lock_index) == (sid, 1)


def test_reap_also_drops_lock_delays_that_ended(log: Log) -> None:
    from registry.commands import SessionCreate, SessionDestroy

    from .builders import reg

    log.ok(reg("n1"))
    sid = "11111111-2222-3333-4444-555555555555"
    log.ok(SessionCreate(id=sid, node="n1", node_checks=(), lock_delay=10))
    assert put(log, "a", op="lock", session=sid)
    log.ok(SessionDestroy(id=sid))
    log.ok(TombstoneReap(until_index=0, now=log.now + 5))
    assert log.store.kv.lock_delays.get("a") is not None
    log.ok(TombstoneReap(until_index=0, now=log.now + 10))
    assert log.store.kv.lock_delays.get("a") is None
