"""Transactions: up to 64 KV and catalog ops applied all or nothing.

Follows Consul's /v1/txn (agent/consul/txn_endpoint.go, state/txn.go): every
op runs in order; failures are collected as ``TxnError(op_index, what)`` with
Consul's messages; if any op failed the whole transaction is rolled back and
only the errors are returned. Write verbs return the entry without its
value, ``get``/``get-tree`` return values, delete verbs return nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..commands import TxnCheckOp, TxnKVOp, TxnNodeOp, TxnOp, TxnServiceOp
from ..errors import ErrorCode
from ..results import Result, TxnError, TxnResponse, TxnResult
from .catalog import (
    delete_check,
    delete_node,
    delete_service,
    ensure_check,
    ensure_node,
    ensure_service,
)
from .kv import (
    iter_prefix,
    kv_cas,
    kv_delete_cas,
    kv_delete_key,
    kv_delete_tree,
    kv_lock,
    kv_set,
    kv_unlock,
)

if TYPE_CHECKING:
    from .store import StateStore, WriteTx

OpOutcome = tuple[list[TxnResult], str | None]


def _kv_read(store: StateStore, op: TxnKVOp) -> OpOutcome:
    entries = store.kv.entries
    if op.verb == "get-tree":
        found = [e for k in iter_prefix(entries, op.key) if (e := entries.get(k)) is not None]
        return [TxnResult(kv=e) for e in found], None
    entry = entries.get(op.key)
    if op.verb == "check-not-exists":
        return ([], f"key {op.key!r} exists") if entry else ([], None)
    if entry is None:
        return [], f"key {op.key!r} doesn't exist"
    if op.verb == "check-index" and entry.modify_index != op.index:
        return [], f"current modify index {entry.modify_index} != {op.index}"
    if op.verb == "check-session" and entry.session != op.session:
        return [], f"current session {entry.session!r} != {op.session!r}"
    if op.verb == "get":
        return [TxnResult(kv=entry)], None
    return [TxnResult(kv=replace(entry, value=b""))], None


def _kv_write(store: StateStore, tx: WriteTx, op: TxnKVOp) -> OpOutcome:
    key = op.key
    verb = op.verb
    result: Result
    if verb == "set":
        result = kv_set(store, tx, key, op.value, op.flags)
    elif verb == "cas":
        result = kv_cas(store, tx, key, op.value, op.flags, op.index)
    elif verb == "lock":
        result = kv_lock(store, tx, key, op.value, op.flags, op.session)
    elif verb == "unlock":
        result = kv_unlock(store, tx, key, op.value, op.flags, op.session)
    elif verb == "delete":
        result = kv_delete_key(store, tx, key)
    elif verb == "delete-cas":
        result = kv_delete_cas(store, tx, key, op.index)
    elif verb == "delete-tree":
        result = kv_delete_tree(store, tx, key)
    else:
        return _kv_read(store, op)
    if not result:
        return [], result.message
    if verb.startswith("delete"):
        return [], None
    entry = store.kv.entries.get(key)
    return ([TxnResult(kv=replace(entry, value=b""))] if entry else []), None


def _node_op(store: StateStore, tx: WriteTx, op: TxnNodeOp) -> OpOutcome:
    name = op.node.node
    existing = store.catalog.nodes.get(name)
    want = op.node.modify_index
    if op.verb == "get":
        if existing is None:
            return [], f"node {name!r} doesn't exist"
        return [TxnResult(node=existing)], None
    if op.verb in ("cas", "delete-cas"):
        current = existing.modify_index if existing else 0
        if current != want or (op.verb == "delete-cas" and existing is None):
            action = "set" if op.verb == "cas" else "delete"
            return [], f"failed to {action} node {name!r}, index is stale"
    if op.verb in ("delete", "delete-cas"):
        delete_node(store, tx, name)
        return [], None
    result = ensure_node(store, tx, replace(op.node, create_index=0, modify_index=0))
    if not result:
        return [], result.message
    return [TxnResult(node=store.catalog.nodes.get(name))], None


def _service_op(store: StateStore, tx: WriteTx, op: TxnServiceOp) -> OpOutcome:
    sid = op.service.id or op.service.service
    existing = store.catalog.services.get((op.node, sid))
    if op.verb == "get":
        if existing is None:
            return [], f"service {sid!r} on node {op.node!r} doesn't exist"
        return [TxnResult(service=existing)], None
    if op.verb in ("cas", "delete-cas"):
        current = existing.modify_index if existing else 0
        if current != op.service.modify_index or (op.verb == "delete-cas" and existing is None):
            action = "set" if op.verb == "cas" else "delete"
            return [], f"failed to {action} service {sid!r} on node {op.node!r}, index is stale"
    if op.verb in ("delete", "delete-cas"):
        delete_service(store, tx, op.node, sid)
        return [], None
    result = ensure_service(store, tx, op.node, op.service)
    if not result:
        return [], result.message
    return [TxnResult(service=store.catalog.services.get((op.node, sid)))], None


def _check_op(store: StateStore, tx: WriteTx, op: TxnCheckOp) -> OpOutcome:
    node = op.check.node
    cid = op.check.check_id or op.check.name
    existing = store.catalog.checks.get((node, cid))
    if op.verb == "get":
        if existing is None:
            return [], f"check {cid!r} on node {node!r} doesn't exist"
        return [TxnResult(check=existing)], None
    if op.verb in ("cas", "delete-cas"):
        current = existing.modify_index if existing else 0
        if current != op.check.modify_index or (op.verb == "delete-cas" and existing is None):
            action = "set" if op.verb == "cas" else "delete"
            return [], f"failed to {action} check {cid!r} on node {node!r}, index is stale"
    if op.verb in ("delete", "delete-cas"):
        delete_check(store, tx, node, cid)
        return [], None
    result = ensure_check(store, tx, op.check)
    if not result:
        return [], result.message
    return [TxnResult(check=store.catalog.checks.get((node, cid)))], None


def _dispatch(store: StateStore, tx: WriteTx, op: TxnOp) -> OpOutcome:
    if op.kv is not None:
        return _kv_write(store, tx, op.kv)
    if op.node is not None:
        return _node_op(store, tx, op.node)
    if op.service is not None:
        return _service_op(store, tx, op.service)
    if op.check is not None:
        return _check_op(store, tx, op.check)
    return [], "op has no KV, Node, Service or Check"


def apply_txn(store: StateStore, tx: WriteTx, ops: Sequence[TxnOp]) -> Result:
    """Run every op; the caller aborts ``tx`` when the result is not ok.

    The result's value is always a ``TxnResponse``: results on success, the
    per-op errors (``OpIndex``, ``What``) on failure.
    """
    results: list[TxnResult] = []
    errors: list[TxnError] = []
    for i, op in enumerate(ops):
        found, error = _dispatch(store, tx, op)
        if error is not None:
            errors.append(TxnError(i, error))
        else:
            results.extend(found)
    if errors:
        message = "; ".join(f"op {e.op_index}: {e.what}" for e in errors)
        return Result(False, TxnResponse(errors=tuple(errors)), ErrorCode.TXN_FAILED, message)
    return Result(True, TxnResponse(results=tuple(results)))


def txn_read(store: StateStore, ops: Sequence[TxnOp]) -> tuple[int, TxnResponse]:
    """A read-only transaction (every op a get/get-tree/check-* verb), served
    without Raft as Consul does. A write verb is reported as an op error."""
    tx = store.begin(0)
    try:
        errors = [
            TxnError(i, "write verb in a read-only transaction")
            for i, op in enumerate(ops)
            if not op.is_read
        ]
        result = apply_txn(store, tx, ops) if not errors else None
    finally:
        tx.abort()
    idx = max(1, store.index_of("kvs", "tombstones", "nodes", "services", "checks"))
    if result is None:
        return idx, TxnResponse(errors=tuple(errors))
    response = result.value
    assert isinstance(response, TxnResponse)
    return idx, response
