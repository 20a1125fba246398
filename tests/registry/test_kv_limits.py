"""KV keys are bounded in the command itself, so a write arriving over RPC,
or an old log entry replayed on restart, cannot store a huge key either."""

from __future__ import annotations

import time

import pytest

from registry import queries
from registry.commands import MAX_KV_KEY, KVRequest, TxnKVOp, TxnOp, TxnRequest
from registry.errors import ErrorCode, ValidationError

from .builders import Log


def test_oversize_key_is_refused_by_the_fsm_quickly_and_stores_nothing(log: Log) -> None:
    start = time.process_time()  # the work, not the wait for a core on a loaded CI
    result = log.apply(KVRequest(op="set", key="k" * 400_000, value=b"v"))
    assert time.process_time() - start < 1.0
    assert not result.ok and result.error == ErrorCode.INVALID
    assert "Key" in result.message and str(MAX_KV_KEY) in result.message
    assert queries.kv_list(log.store, None, "")[1] == []


def test_key_limit_counts_utf8_bytes_and_allows_exactly_the_limit(log: Log) -> None:
    log.ok(KVRequest(op="set", key="é" * (MAX_KV_KEY // 2), value=b"v"))
    assert not log.apply(KVRequest(op="set", key="é" * (MAX_KV_KEY // 2) + "x")).ok


@pytest.mark.parametrize("key", ["a\udcff", "k" * (MAX_KV_KEY + 1)])
def test_txn_kv_keys_follow_the_same_rule(key: str) -> None:
    op = TxnOp(kv=TxnKVOp(verb="set", key=key, value=b"v"))
    with pytest.raises(ValidationError) as info:
        TxnRequest(ops=(op,)).validate()
    assert info.value.field == "Ops[0].KV.Key"
