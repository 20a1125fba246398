"""The canaries table: a record and its splitter in one command, guarded by
check-and-set on the record's ModifyIndex (issue 19)."""

from __future__ import annotations

from dataclasses import replace

from registry import queries
from registry.commands import CanarySet, ConfigEntryRequest
from registry.errors import ErrorCode
from registry.records import Canary, ConfigEntry
from registry.state.watch import WatchSet

from .builders import Log


def _splitter(weight: float) -> ConfigEntry:
    splits = [
        {"Weight": 100 - weight, "ServiceSubset": "v1"},
        {"Weight": weight, "ServiceSubset": "v2"},
    ]
    return ConfigEntry("service-splitter", "api", {"Splits": splits})


CANARY = Canary("api", "v1", "v2", (10.0, 50.0, 100.0))


def test_create_stores_record_and_splitter_at_one_index() -> None:
    log = Log()
    log.ok(CanarySet(canary=CANARY, splitter=_splitter(10)))
    idx, rec = queries.canary_get(log.store, None, "api")
    _, entry = queries.config_entry_get(log.store, None, "service-splitter", "api")
    assert rec is not None and entry is not None
    assert (rec.create_index, rec.modify_index, idx) == (1, 1, 1)
    assert entry.modify_index == 1
    assert entry.body["Splits"][1] == {"Weight": 10, "ServiceSubset": "v2"}


def test_a_step_with_a_stale_index_changes_nothing() -> None:
    log = Log()
    log.ok(CanarySet(canary=CANARY, splitter=_splitter(10)))
    log.ok(CanarySet(canary=replace(CANARY, step=1), splitter=_splitter(50), cas=1))
    # A second controller proposing the same step from the old record loses.
    result = log.apply(CanarySet(canary=replace(CANARY, step=1), splitter=_splitter(50), cas=1))
    assert not result.ok and result.error == ErrorCode.CAS_CONFLICT
    _, rec = queries.canary_get(log.store, None, "api")
    _, entry = queries.config_entry_get(log.store, None, "service-splitter", "api")
    assert rec is not None and entry is not None
    assert (rec.step, rec.create_index, rec.modify_index, entry.modify_index) == (1, 1, 2, 2)
    # Create-only (cas 0) fails once a record exists.
    assert log.apply(CanarySet(canary=CANARY, cas=0)).error == ErrorCode.CAS_CONFLICT


def test_config_index_guard_refuses_after_another_entry_changed() -> None:
    log = Log()
    log.ok(ConfigEntryRequest(op="upsert", entry=ConfigEntry("service-defaults", "api")))
    log.ok(ConfigEntryRequest(op="upsert", entry=ConfigEntry("service-defaults", "web")))
    result = log.apply(CanarySet(canary=CANARY, splitter=_splitter(10), config_index=1))
    assert result.error == ErrorCode.CAS_CONFLICT
    assert queries.canary_get(log.store, None, "api")[1] is None
    log.ok(CanarySet(canary=CANARY, splitter=_splitter(10), config_index=2))


def test_a_step_wakes_the_services_readers_only() -> None:
    log = Log()
    log.ok(CanarySet(canary=CANARY))
    log.ok(CanarySet(canary=replace(CANARY, service="web")))
    api, all_ = WatchSet(), WatchSet()
    queries.canary_get(log.store, api, "api")
    queries.canary_list(log.store, all_)
    fired: list[str] = []
    api.register(lambda: fired.append("api"))
    all_.register(lambda: fired.append("all"))
    log.ok(CanarySet(canary=replace(CANARY, service="web", state="paused"), cas=2))
    assert fired == ["all"]
    idx, rows = queries.canary_list(log.store, None)
    assert idx == 3 and [r.service for r in rows] == ["api", "web"]
    assert queries.canary_get(log.store, None, "api")[0] == 1
