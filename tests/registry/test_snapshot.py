"""Snapshot and restore stream every table; a restored store equals the original."""

from __future__ import annotations

import gc
import threading

import msgpack
import pytest

from registry import queries
from registry.commands import (
    ACLAuthMethodSet,
    ACLBindingRuleSet,
    ACLPolicySet,
    ACLTokenSet,
    AutopilotConfigSet,
    CAConfigSet,
    CanarySet,
    CARootsSet,
    ConfigEntryRequest,
    CoordinateBatchUpdate,
    IntentionUpsert,
    KVRequest,
    LivenessSet,
    SessionCreate,
    SessionDestroy,
)
from registry.errors import CorruptSnapshotError
from registry.fsm import RegistryFSM
from registry.records import (
    ACLAuthMethod,
    ACLBindingRule,
    ACLLink,
    ACLPolicy,
    ACLTemplatedPolicy,
    ACLToken,
    AutopilotConfig,
    CAConfig,
    Canary,
    CanaryEvent,
    CARoot,
    ConfigEntry,
    Coordinate,
    Intention,
)
from registry.state import acl as acl_state
from registry.state import autopilot as autopilot_state
from registry.state import coordinates as coordinate_state
from registry.state import frozen
from registry.state.watch import WatchSet

from .builders import Log, chk, reg, svc

S1 = "11111111-1111-1111-1111-111111111111"
S2 = "22222222-2222-2222-2222-222222222222"


def populate(log: Log) -> None:
    log.ok(reg("n1", svc("web", tags=("a",)), (chk("serfHealth"), chk("w", service_id="web"))))
    log.ok(reg("n2", svc("db", meta={"v": "1"}), (chk("serfHealth", "warning"),)))
    log.ok(SessionCreate(id=S1, node="n1", lock_delay=5))
    log.ok(SessionCreate(id=S2, node="n2", node_checks=(), ttl="30s"))
    log.ok(KVRequest(op="lock", key="locks/a", value=b"1", session=S1))
    log.ok(KVRequest(op="set", key="cfg/x", value=b"\x00" * 10, flags=9))
    log.ok(KVRequest(op="set", key="cfg/y", value=b"y"))
    log.ok(KVRequest(op="delete", key="cfg/y"))
    log.ok(SessionDestroy(id=S1))  # leaves a lock delay on locks/a
    log.ok(
        IntentionUpsert(
            intention=Intention("i1", source_name="web", destination_name="db", action="allow")
        )
    )
    log.ok(
        ConfigEntryRequest(
            op="upsert", entry=ConfigEntry("proxy-defaults", "global", {"Config": {"a": [1, 2]}})
        )
    )
    log.ok(CAConfigSet(config=CAConfig(cluster_id="c1", config={"PrivateKey": "k"})))
    log.ok(CARootsSet(roots=(CARoot("r1", root_cert="C", signing_key="K", active=True),), cas=0))
    log.ok(ACLPolicySet(policies=(ACLPolicy("p1", name="read"),)))
    log.ok(
        ACLTokenSet(
            tokens=(
                ACLToken("aaaaaaaa-0000-0000-0000-000000000001", "sec", policies=(ACLLink("p1"),)),
            )
        )
    )
    log.ok(ACLAuthMethodSet(methods=(ACLAuthMethod("k8s", type="jwt", config={"x": [1]}),)))
    log.ok(
        ACLBindingRuleSet(
            rules=(
                ACLBindingRule(
                    "bbbbbbbb-0000-0000-0000-000000000001",
                    auth_method="k8s",
                    bind_type="service",
                    bind_name="${value.name}",
                ),
            )
        )
    )
    log.ok(
        ACLTokenSet(
            tokens=(
                ACLToken(
                    "aaaaaaaa-0000-0000-0000-000000000002",
                    "login",
                    templated_policies=(ACLTemplatedPolicy("builtin/service", "web", ("dc1",)),),
                    auth_method="k8s",
                    expiration_time="2030-01-01T00:00:00Z",
                ),
            )
        )
    )
    log.ok(LivenessSet(node="n1", status="alive"))
    log.ok(CoordinateBatchUpdate(updates=(Coordinate("n1", vec=(0.5,) * 8, height=1e-5),)))
    log.ok(AutopilotConfigSet(config=AutopilotConfig(cleanup_dead_servers=False, min_quorum=3)))
    step = CanaryEvent(time=1.5, step=0, weight=5, event="step", requests=3, p99_ms=None)
    canary = Canary("web", "v1", "v2", (5, 100), step_started_at=1.5, last=step, history=(step,))
    splitter = ConfigEntry("service-splitter", "web", {"Splits": [{"Weight": 100}]})
    log.ok(CanarySet(canary=canary, splitter=splitter))


def test_restore_reproduces_every_table_and_index(log: Log) -> None:
    populate(log)
    snap = log.fsm.snapshot()
    tables = {name for name, _ in msgpack.unpackb(snap)["tables"]}
    assert tables == {
        "nodes", "services", "checks", "kvs", "tombstones", "lock_delays", "sessions",
        "intentions", "config_entries", "ca_roots", "ca_config", "acl_tokens",
        "acl_policies", "acl_roles", "acl_auth_methods", "acl_binding_rules", "liveness",
        "autopilot_config", "coordinates", "canaries",
    }  # fmt: skip
    fresh = RegistryFSM()
    fresh.restore(snap)
    assert fresh.snapshot() == snap
    assert fresh.store.indexes == log.store.indexes
    for query in (
        lambda s: queries.health_service_nodes(s, None, "web"),
        lambda s: queries.kv_list(s, None, ""),
        lambda s: queries.kv_get(s, None, "cfg/y"),
        lambda s: queries.session_list(s, None),
        lambda s: queries.intention_list(s, None),
        lambda s: queries.ca_roots(s, None),
        lambda s: queries.acl_token_list(s, None),
        lambda s: acl_state.acl_auth_method_list(s, None),
        lambda s: acl_state.acl_binding_rule_list(s, None),
        lambda s: queries.config_entry_list(s, None),
        lambda s: autopilot_state.autopilot_config(s, None),
        lambda s: coordinate_state.coordinate_list(s, None),
        lambda s: queries.canary_list(s, None),
    ):
        assert query(fresh.store) == query(log.store)


def test_restore_replaces_existing_state_and_wakes_readers(log: Log) -> None:
    empty = RegistryFSM().snapshot()
    populate(log)
    ws = WatchSet()
    queries.kv_get(log.store, ws, "cfg/x")
    fired: list[int] = []
    ws.register(lambda: fired.append(1))
    log.fsm.restore(empty)
    assert fired == [1]
    assert queries.catalog_nodes(log.store, None) == (1, [])
    assert queries.kv_get(log.store, None, "cfg/x") == (1, None)


@pytest.mark.parametrize(
    "data",
    [
        b"not msgpack \xc1",
        msgpack.packb({"v": 99, "index": [], "tables": []}),
        msgpack.packb({"v": 1, "index": [], "tables": []}),
        msgpack.packb({"v": 1, "index": [], "tables": [["nodes", [["n1", "short"]]]]}),
    ],
)
def test_corrupt_snapshot_leaves_state_unchanged(log: Log, data: bytes) -> None:
    populate(log)
    before = log.fsm.snapshot()
    with pytest.raises(CorruptSnapshotError):
        log.fsm.restore(data)
    assert log.fsm.snapshot() == before


def test_snapshot_view_is_frozen_when_taken_and_encodes_exactly(log: Log) -> None:
    """The view the raft driver serializes (here in a worker thread): the state when
    it was taken (writes after it do not leak in), the same bytes as
    ``snapshot()`` then, which equal packing the whole document at once."""
    populate(log)
    for i in range(300):
        log.ok(reg(f"m{i}", svc(f"s{i % 7}", id=f"s{i}"), (chk("serfHealth"),)))
    before = log.fsm.snapshot()
    view = log.fsm.snapshot_view()
    log.ok(reg("late", svc("web"), (chk("serfHealth"),)))
    log.ok(KVRequest(op="delete", key="cfg/x"))
    log.ok(reg("m0", svc("changed", id="s0"), (chk("serfHealth", "critical"),)))
    out: list[bytes] = []
    worker = threading.Thread(target=lambda: out.append(view()))
    worker.start()
    worker.join()
    assert out == [before]
    stepped = log.fsm.store.snapshot_view()
    steps = sum(1 for _ in stepped.steps())
    assert stepped.result() == log.fsm.snapshot()
    # Bounded steps: the rows go out STEP_ROWS at a time, not all at once.
    assert steps >= len(log.fsm.store.catalog.services) // frozen.STEP_ROWS
    doc = msgpack.unpackb(before, raw=False, strict_map_key=False)
    assert msgpack.packb(doc, use_bin_type=True) == before
    fresh = RegistryFSM()
    fresh.restore(before)
    assert fresh.snapshot() == before
    assert log.fsm.snapshot() != before
    assert queries.kv_get(fresh.store, None, "cfg/x")[1] is not None


def test_snapshot_steps_are_bounded(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step encodes (or sorts) at most STEP_ROWS rows: with a small
    step the 900 instances need many steps, and still give the same bytes."""
    for i in range(300):
        log.ok(reg(f"m{i:03}", svc("web", id=f"a{i}"), (chk("serfHealth"),)))
        log.ok(reg(f"m{i:03}", svc("db", id=f"b{i}")))
        log.ok(reg(f"m{i:03}", svc("api", id=f"c{i}")))
    want = log.fsm.snapshot()
    monkeypatch.setattr(frozen, "STEP_ROWS", 50)
    view = log.fsm.snapshot_view()
    steps = sum(1 for _ in view.steps())
    assert steps >= 900 // 50 * 2  # sorting runs, then encoding
    assert view.result() == want
    assert gc.isenabled()  # paused only while the view is alive
    dropped = log.fsm.snapshot_view()
    assert not gc.isenabled()
    del dropped
    assert gc.isenabled()


def test_snapshot_from_before_auth_methods_restores(log: Log) -> None:
    """An upgrade: a snapshot written before tokens gained TemplatedPolicies and
    AuthMethod (and roles TemplatedPolicies), without the auth-method and
    binding-rule tables, restores with those empty and defaulted."""
    populate(log)
    obj = msgpack.unpackb(log.fsm.snapshot())
    old_tables = []
    for name, rows in obj["tables"]:
        if name in ("acl_auth_methods", "acl_binding_rules"):
            continue
        if name == "acl_tokens":
            rows = [r[:-2] for r in rows if not r[-1]]  # drop the login token, then 2 fields
        if name == "acl_roles":
            rows = [r[:-1] for r in rows]
        old_tables.append([name, rows])
    fresh = RegistryFSM()
    fresh.restore(msgpack.packb({**obj, "tables": old_tables}))
    _, tokens = queries.acl_token_list(fresh.store, None)
    assert [(t.accessor_id, t.templated_policies, t.auth_method) for t in tokens] == [
        ("aaaaaaaa-0000-0000-0000-000000000001", (), "")
    ]
    assert acl_state.acl_auth_method_list(fresh.store, None)[1] == []
    bad = [["acl_tokens", [["only-two", "fields"]]]]
    with pytest.raises(CorruptSnapshotError):
        RegistryFSM().restore(msgpack.packb({**obj, "tables": bad}))
