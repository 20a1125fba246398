"""Config entries (Consul /v1/config docs): upsert, CAS, delete, list by kind."""

from __future__ import annotations

import pytest

from registry import queries, shapes
from registry.commands import ConfigEntryBatch, ConfigEntryRequest
from registry.errors import ErrorCode, ValidationError
from registry.fsm import RegistryFSM
from registry.records import ConfigEntry

from .builders import Log


def entry(kind: str, name: str, **body: object) -> ConfigEntry:
    return ConfigEntry(kind, name, dict(body))


def test_upsert_get_and_shape(log: Log) -> None:
    log.ok(ConfigEntryRequest(op="upsert", entry=entry("service-defaults", "web", Protocol="http")))
    log.ok(ConfigEntryRequest(op="upsert", entry=entry("service-defaults", "web", Protocol="grpc")))
    idx, got = queries.config_entry_get(log.store, None, "service-defaults", "web")
    assert got is not None and idx == 2 and (got.create_index, got.modify_index) == (1, 2)
    assert shapes.config_entry_json(got) == {
        "Kind": "service-defaults",
        "Name": "web",
        "Protocol": "grpc",
        "CreateIndex": 1,
        "ModifyIndex": 2,
    }


def test_cas_zero_creates_only_and_cas_must_match(log: Log) -> None:
    e = entry("service-resolver", "db", ConnectTimeout="5s")
    assert log.apply(ConfigEntryRequest(op="upsert-cas", entry=e, cas=0))
    result = log.apply(ConfigEntryRequest(op="upsert-cas", entry=e, cas=0))
    assert not result and result.error is ErrorCode.CAS_CONFLICT
    assert log.apply(ConfigEntryRequest(op="upsert-cas", entry=e, cas=1))
    assert not log.apply(ConfigEntryRequest(op="delete-cas", entry=e, cas=1))
    assert log.apply(ConfigEntryRequest(op="delete-cas", entry=e, cas=3))
    assert queries.config_entry_get(log.store, None, "service-resolver", "db")[1] is None


def test_list_by_kind_sorted(log: Log) -> None:
    for name in ("b", "a"):
        log.ok(ConfigEntryRequest(op="upsert", entry=entry("service-router", name)))
    log.ok(ConfigEntryRequest(op="upsert", entry=entry("proxy-defaults", "global")))
    _, routers = queries.config_entry_list(log.store, None, "service-router")
    assert [e.name for e in routers] == ["a", "b"]
    _, every = queries.config_entry_list(log.store, None)
    assert [(e.kind, e.name) for e in every] == [
        ("proxy-defaults", "global"),
        ("service-router", "a"),
        ("service-router", "b"),
    ]
    log.ok(ConfigEntryRequest(op="delete", entry=entry("service-router", "a")))
    idx, routers = queries.config_entry_list(log.store, None, "service-router")
    assert [e.name for e in routers] == ["b"] and idx == 4


@pytest.mark.parametrize(
    ("e", "field"),
    [
        (entry("nope", "x"), "Kind"),
        (entry("proxy-defaults", "web"), "Name"),
        (entry("service-defaults", ""), "Name"),
        (entry("service-defaults", "web", Kind="x"), "Kind"),
    ],
)
def test_validation(e: ConfigEntry, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ConfigEntryRequest(op="upsert", entry=e).validate()
    assert err.value.field == field


def test_batch_stores_every_entry_at_one_index(log: Log) -> None:
    batch = ConfigEntryBatch(
        entries=(
            entry("service-defaults", "web", Protocol="http"),
            entry("service-router", "web", Routes=[]),
        )
    )
    log.ok(batch)
    _, every = queries.config_entry_list(log.store, None)
    assert [(e.kind, e.name, e.create_index, e.modify_index) for e in every] == [
        ("service-defaults", "web", 1, 1),
        ("service-router", "web", 1, 1),
    ]


def test_batch_with_a_stale_index_stores_nothing(log: Log) -> None:
    log.ok(ConfigEntryRequest(op="upsert", entry=entry("service-defaults", "db")))
    log.ok(ConfigEntryBatch(entries=(entry("service-defaults", "web"),)))  # no guard
    guarded = ConfigEntryBatch(entries=(entry("service-router", "web"),), index=1)
    result = log.apply(guarded)
    assert not result and result.error is ErrorCode.CAS_CONFLICT
    assert queries.config_entry_get(log.store, None, "service-router", "web")[1] is None
    log.ok(ConfigEntryBatch(entries=(entry("service-router", "web"),), index=2))
    assert queries.config_entry_get(log.store, None, "service-router", "web")[1] is not None


def test_batch_with_one_invalid_entry_stores_nothing(log: Log) -> None:
    bad = ConfigEntryBatch(
        entries=(entry("service-defaults", "web"), entry("proxy-defaults", "other"))
    )
    with pytest.raises(ValidationError) as err:
        bad.validate()
    assert err.value.field == "Entries[1].Name"
    result = log.apply(bad)
    assert not result and result.error is ErrorCode.INVALID
    assert queries.config_entry_list(log.store, None)[1] == []
    dup = ConfigEntryBatch(entries=(entry("service-defaults", "web"),) * 2)
    assert not log.apply(dup)


def test_batch_survives_snapshot_and_restore(log: Log) -> None:
    log.ok(ConfigEntryBatch(entries=(entry("service-defaults", "web", Protocol="http"),)))
    other = RegistryFSM()
    other.restore(log.fsm.snapshot())
    _, got = queries.config_entry_get(other.store, None, "service-defaults", "web")
    assert got is not None and got.body == {"Protocol": "http"} and got.modify_index == 1
