"""Sessions, locks and lock-delay (Consul /v1/session docs, state/session.go)."""

from __future__ import annotations

import pytest

from registry import queries, shapes
from registry.commands import DeregisterRequest, KVRequest, SessionCreate, SessionDestroy
from registry.errors import ErrorCode, ValidationError

from .builders import Log, chk, reg, svc

S1 = "11111111-1111-1111-1111-111111111111"
S2 = "22222222-2222-2222-2222-222222222222"


@pytest.fixture
def node(log: Log) -> Log:
    log.ok(reg("n1", svc("web"), (chk("serfHealth"), chk("web-check", service_id="web"))))
    return log


def lock(log: Log, key: str, session: str, op: str = "lock") -> bool:
    return bool(log.apply(KVRequest(op=op, key=key, value=b"x", session=session)))


def test_create_defaults_to_serf_health_and_release(node: Log) -> None:
    result = node.ok(SessionCreate(id=S1, node="n1"))
    assert result.value == S1
    idx, session = queries.session_info(node.store, None, S1)
    assert session is not None and idx == 2
    assert session.node_checks == ("serfHealth",)
    assert (session.behavior, session.lock_delay) == ("release", 15.0)
    body = shapes.session_json(session)
    assert body["LockDelay"] == 15_000_000_000 and body["NodeChecks"] == ["serfHealth"]


def test_create_requires_node_and_live_checks(log: Log) -> None:
    assert log.apply(SessionCreate(id=S1, node="n1")).error is ErrorCode.NOT_FOUND
    log.ok(reg("n1", checks=(chk("serfHealth", "critical"),)))
    result = log.apply(SessionCreate(id=S1, node="n1"))
    assert result.error is ErrorCode.INVALID and "critical" in result.message
    result = log.apply(SessionCreate(id=S1, node="n1", node_checks=("missing",)))
    assert result.error is ErrorCode.NOT_FOUND


def test_ttl_and_lock_delay_limits() -> None:
    SessionCreate(id=S1, node="n", ttl="10s").validate()
    SessionCreate(id=S1, node="n", ttl="24h").validate()
    for ttl in ("9s", "25h", "ten"):
        with pytest.raises(ValidationError) as err:
            SessionCreate(id=S1, node="n", ttl=ttl).validate()
        assert err.value.field == "TTL"
    with pytest.raises(ValidationError) as err:
        SessionCreate(id=S1, node="n", lock_delay=61).validate()
    assert err.value.field == "LockDelay"


def test_at_most_one_holder(node: Log) -> None:
    node.ok(SessionCreate(id=S1, node="n1"))
    node.ok(SessionCreate(id=S2, node="n1"))
    assert lock(node, "k", S1)
    result = node.apply(KVRequest(op="lock", key="k", session=S2))
    assert result.error is ErrorCode.LOCK_HELD
    assert lock(node, "k", S1)  # re-acquire by the holder succeeds...
    entry = queries.kv_get(node.store, None, "k")[1]
    assert entry is not None and (entry.session, entry.lock_index) == (S1, 1)  # ...same LockIndex
    assert not lock(node, "k", S2, "unlock")
    assert lock(node, "k", S1, "unlock")
    assert lock(node, "k", S2)
    entry = queries.kv_get(node.store, None, "k")[1]
    assert entry is not None and (entry.session, entry.lock_index) == (S2, 2)


def test_lock_with_unknown_session_fails(node: Log) -> None:
    result = node.apply(KVRequest(op="lock", key="k", session=S1))
    assert result.error is ErrorCode.INVALID_SESSION


def test_destroy_releases_locks_and_lock_delay_blocks_reacquire(node: Log) -> None:
    node.ok(SessionCreate(id=S1, node="n1", lock_delay=10))
    node.ok(SessionCreate(id=S2, node="n1"))
    assert lock(node, "k", S1)
    node.ok(SessionDestroy(id=S1))
    entry = queries.kv_get(node.store, None, "k")[1]
    assert entry is not None and entry.session == "" and entry.value == b"x"
    node.now += 9.9
    assert node.apply(KVRequest(op="lock", key="k", session=S2)).error is ErrorCode.LOCK_DELAY
    node.now += 0.2
    assert lock(node, "k", S2)


def test_behavior_delete_removes_held_keys(node: Log) -> None:
    node.ok(SessionCreate(id=S1, node="n1", behavior="delete", lock_delay=0))
    assert lock(node, "k", S1)
    node.ok(SessionDestroy(id=S1))
    assert queries.kv_get(node.store, None, "k")[1] is None
    assert node.store.kv.lock_delays.get("k") is None  # zero lock-delay sets none


def test_check_going_critical_invalidates_session(node: Log) -> None:
    node.ok(SessionCreate(id=S1, node="n1", service_checks=("web-check",)))
    assert lock(node, "k", S1)
    node.ok(reg("n1", checks=(chk("web-check", "critical", service_id="web"),)))
    assert queries.session_info(node.store, None, S1)[1] is None
    assert queries.kv_get(node.store, None, "k")[1].session == ""  # type: ignore[union-attr]


def test_node_deregistration_invalidates_sessions(node: Log) -> None:
    node.ok(SessionCreate(id=S1, node="n1", node_checks=()))
    node.ok(DeregisterRequest(node="n1"))
    assert queries.session_list(node.store, None)[1] == []


def test_deleting_a_bound_check_invalidates(node: Log) -> None:
    node.ok(SessionCreate(id=S1, node="n1"))
    node.ok(DeregisterRequest(node="n1", check_id="serfHealth"))
    assert queries.session_info(node.store, None, S1)[1] is None


def test_session_node_and_list(node: Log) -> None:
    node.ok(reg("n2", checks=(chk("serfHealth"),)))
    node.ok(SessionCreate(id=S2, node="n1"))
    node.ok(SessionCreate(id=S1, node="n2"))
    assert [s.id for s in queries.session_list(node.store, None)[1]] == [S1, S2]
    assert [s.id for s in queries.session_node(node.store, None, "n1")[1]] == [S2]


def test_destroy_unknown_session_is_ok(node: Log) -> None:
    assert node.apply(SessionDestroy(id=S1))
