"""Transactions (Consul /v1/txn docs): all or nothing, per-op errors, result shapes."""

from __future__ import annotations

import pytest

from registry import queries, shapes
from registry.commands import (
    KVRequest,
    TxnCheckOp,
    TxnKVOp,
    TxnNodeOp,
    TxnOp,
    TxnRequest,
    TxnServiceOp,
)
from registry.errors import ErrorCode, ValidationError
from registry.records import HealthCheck, Node
from registry.results import TxnResponse

from .builders import Log, svc


def kv(verb: str, key: str = "", **kw: object) -> TxnOp:
    return TxnOp(kv=TxnKVOp(verb=verb, key=key, **kw))  # type: ignore[arg-type]


def run(log: Log, *ops: TxnOp) -> tuple[bool, TxnResponse]:
    result = log.apply(TxnRequest(ops=ops))
    assert isinstance(result.value, TxnResponse)
    return result.ok, result.value


def test_kv_ops_commit_together_and_return_entries_without_values(log: Log) -> None:
    ok, resp = run(log, kv("set", "a", value=b"1"), kv("set", "b", value=b"2"), kv("get", "a"))
    assert ok and resp.errors == ()
    assert [(r.kv.key, r.kv.value) for r in resp.results] == [("a", b""), ("b", b""), ("a", b"1")]  # type: ignore[union-attr]
    assert queries.kv_get(log.store, None, "b")[0] == 1  # one raft index for the whole txn


def test_failure_rolls_everything_back_and_reports_each_error(log: Log) -> None:
    log.ok(KVRequest(op="set", key="existing", value=b"x"))
    before = log.fsm.snapshot()
    ok, resp = run(
        log,
        kv("set", "new", value=b"1"),
        kv("cas", "existing", value=b"2", index=99),
        kv("delete", "existing"),
        kv("get", "missing"),
    )
    assert not ok and resp.results == ()
    assert [(e.op_index, e.what) for e in resp.errors] == [
        (1, "failed to set key 'existing', index is stale"),
        (3, "key 'missing' doesn't exist"),
    ]
    assert log.fsm.snapshot() == before
    body = shapes.txn_response_json(resp)
    assert body["Results"] is None and body["Errors"][0] == {
        "OpIndex": 1,
        "What": "failed to set key 'existing', index is stale",
    }


def test_check_verbs(log: Log) -> None:
    log.ok(KVRequest(op="set", key="k", value=b"x"))
    ok, _ = run(log, kv("check-index", "k", index=1), kv("check-not-exists", "nope"))
    assert ok
    ok, resp = run(log, kv("check-index", "k", index=2))
    assert not ok and resp.errors[0].what == "current modify index 1 != 2"
    ok, resp = run(log, kv("check-not-exists", "k"))
    assert not ok and "exists" in resp.errors[0].what
    ok, resp = run(log, kv("check-session", "k", session="s"))
    assert not ok and "current session" in resp.errors[0].what


def test_get_tree_and_delete_tree(log: Log) -> None:
    run(log, kv("set", "t/a", value=b"1"), kv("set", "t/b", value=b"2"))
    ok, resp = run(log, kv("get-tree", "t/"), kv("delete-tree", "t/"))
    assert ok and [(r.kv.key, r.kv.value) for r in resp.results] == [("t/a", b"1"), ("t/b", b"2")]  # type: ignore[union-attr]
    assert queries.kv_list(log.store, None, "t/")[1] == []


def test_catalog_ops(log: Log) -> None:
    node = Node("n1", address="10.0.0.1")
    ok, resp = run(
        log,
        TxnOp(node=TxnNodeOp(verb="set", node=node)),
        TxnOp(service=TxnServiceOp(verb="set", node="n1", service=svc("web"))),
        TxnOp(
            check=TxnCheckOp(
                verb="set", check=HealthCheck("c", node="n1", status="passing", service_id="web")
            )
        ),
    )
    assert ok and resp.results[0].node is not None and resp.results[1].service is not None
    assert resp.results[2].check is not None and resp.results[2].check.service_name == "web"
    ok, resp = run(
        log, TxnOp(node=TxnNodeOp(verb="cas", node=Node("n1", address="x", modify_index=7)))
    )
    assert not ok and resp.errors[0].what == "failed to set node 'n1', index is stale"
    ok, resp = run(
        log, TxnOp(node=TxnNodeOp(verb="cas", node=Node("n1", address="x", modify_index=1)))
    )
    assert ok and resp.results[0].node.address == "x"  # type: ignore[union-attr]
    ok, resp = run(log, TxnOp(service=TxnServiceOp(verb="get", node="n1", service=svc("nope"))))
    assert not ok and "doesn't exist" in resp.errors[0].what
    ok, _ = run(log, TxnOp(service=TxnServiceOp(verb="delete", node="n1", service=svc("web"))))
    assert ok and queries.catalog_service_nodes(log.store, None, "web")[1] == []
    current = queries.catalog_nodes(log.store, None)[1][0].modify_index
    ok, _ = run(log, TxnOp(node=TxnNodeOp(verb="delete-cas", node=Node("n1", modify_index=1))))
    assert not ok
    ok, _ = run(
        log, TxnOp(node=TxnNodeOp(verb="delete-cas", node=Node("n1", modify_index=current)))
    )
    assert ok and queries.catalog_nodes(log.store, None)[1] == []


def test_at_most_64_ops() -> None:
    TxnRequest(ops=tuple(kv("set", f"k{i}") for i in range(64))).validate()
    with pytest.raises(ValidationError) as err:
        TxnRequest(ops=tuple(kv("set", f"k{i}") for i in range(65))).validate()
    assert err.value.field == "Ops" and "too many operations" in err.value.message


def test_bad_verb_is_a_validation_error_with_op_path() -> None:
    with pytest.raises(ValidationError) as err:
        TxnRequest(ops=(kv("set", "a"), kv("explode", "b"))).validate()
    assert err.value.field == "Ops[1].KV.Verb"


def test_read_only_txn_runs_without_raft(log: Log) -> None:
    log.ok(KVRequest(op="set", key="k", value=b"x"))
    idx, resp = queries.txn_read(log.store, [kv("get", "k")])
    assert idx == 1 and resp.results[0].kv.value == b"x"  # type: ignore[union-attr]
    _, resp = queries.txn_read(log.store, [kv("set", "k")])
    assert resp.errors[0].op_index == 0


def test_result_error_code(log: Log) -> None:
    result = log.apply(TxnRequest(ops=(kv("get", "x"),)))
    assert result.error is ErrorCode.TXN_FAILED
