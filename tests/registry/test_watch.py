"""Watch granularity: a write wakes exactly the readers of what it touched."""

from __future__ import annotations

from registry import queries
from registry.commands import KVRequest
from registry.state.watch import WatchRegistry, WatchSet

from .builders import Log, chk, reg, svc


def _watch(log: Log, query, *args: object) -> list[int]:  # type: ignore[no-untyped-def]
    fired: list[int] = []
    ws = WatchSet()
    query(log.store, ws, *args)
    ws.register(lambda: fired.append(1))
    return fired


def test_ten_thousand_watchers_on_web_ignore_db_and_wake_on_web(log: Log) -> None:
    log.ok(reg("n1", svc("web")))
    log.ok(reg("n2", svc("db")))
    counters = [_watch(log, queries.health_service_nodes, "web") for _ in range(10_000)]
    assert len(log.store.watches.get("service:web")) == 10_000
    log.ok(reg("n2", svc("db", port=5432)))
    assert sum(len(c) for c in counters) == 0
    log.ok(reg("n1", svc("web", port=8080)))
    assert all(c == [1] for c in counters)


def test_node_check_wakes_services_on_that_node_only(log: Log) -> None:
    log.ok(reg("n1", svc("web"), (chk("serfHealth"),)))
    log.ok(reg("n2", svc("db"), (chk("serfHealth"),)))
    web = _watch(log, queries.health_service_nodes, "web")
    db = _watch(log, queries.health_service_nodes, "db")
    log.ok(reg("n1", checks=(chk("serfHealth", "critical"),)))
    assert (web, db) == ([1], [])


def test_kv_key_and_prefix_watches(log: Log) -> None:
    key_a = _watch(log, queries.kv_get, "app/a")
    prefix_app = _watch(log, queries.kv_list, "app/")
    prefix_other = _watch(log, queries.kv_list, "other/")
    key_b = _watch(log, queries.kv_get, "app/b")
    log.ok(KVRequest(op="set", key="app/a", value=b"1"))
    assert (key_a, prefix_app, prefix_other, key_b) == ([1], [1], [], [])


def test_delete_tree_wakes_readers_of_deleted_keys(log: Log) -> None:
    log.ok(KVRequest(op="set", key="app/x/1", value=b"1"))
    key = _watch(log, queries.kv_get, "app/x/1")
    sub = _watch(log, queries.kv_list, "app/x/")
    log.ok(KVRequest(op="delete-tree", key="app/"))
    assert (key, sub) == ([1], [1])


def test_failed_write_fires_nothing(log: Log) -> None:
    log.ok(KVRequest(op="set", key="k", value=b"1"))
    fired = _watch(log, queries.kv_get, "k")
    assert not log.apply(KVRequest(op="cas", key="k", value=b"2", cas=99))
    assert fired == []


def test_catalog_node_watch(log: Log) -> None:
    log.ok(reg("n1"))
    n1 = _watch(log, queries.catalog_node, "n1")
    n2 = _watch(log, queries.catalog_node, "n2")
    log.ok(reg("n1", svc("web")))
    assert (n1, n2) == ([1], [])


def test_fired_watch_calls_late_registrant_at_once_and_unregister_cleans_up() -> None:
    registry = WatchRegistry()
    ws = WatchSet()
    ws.add(registry.get("k"))
    registry.fire(["k"])
    calls: list[int] = []
    ws.register(lambda: calls.append(1))
    assert calls == [1]
    ws2 = WatchSet()
    ws2.add(registry.get("k"))
    ws2.register(lambda: calls.append(2))
    ws2.unregister()
    assert not registry.has("k")  # idle watches do not pile up
    registry.fire(["k"])
    assert calls == [1]


def test_dropped_idle_watch_reattaches_on_register() -> None:
    registry = WatchRegistry()
    ws_a, ws_b = WatchSet(), WatchSet()
    ws_a.add(registry.get("k"))
    ws_b.add(registry.get("k"))
    ws_b.register(lambda: None)
    ws_b.unregister()  # drops the idle watch ws_a also holds
    calls: list[str] = []
    ws_a.register(lambda: calls.append("a"))
    registry.fire(["k"])
    assert calls == ["a"]
