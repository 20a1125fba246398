"""Health queries (Consul /v1/health docs): aggregation, passing, tags, node meta, connect."""

from __future__ import annotations

from registry import queries, shapes
from registry.commands import DeregisterRequest
from registry.records import KIND_CONNECT_PROXY

from .builders import Log, chk, reg, svc


def _nodes(rows: list) -> list[str]:  # type: ignore[type-arg]
    return [r.node.node for r in rows]


def test_instance_checks_are_node_checks_then_its_own(log: Log) -> None:
    log.ok(reg("n1", svc("web"), (chk("serfHealth"), chk("web-b", service_id="web"))))
    log.ok(reg("n1", svc("db"), (chk("db-a", service_id="db"),)))
    _, rows = queries.health_service_nodes(log.store, None, "web")
    assert [c.check_id for c in rows[0].checks] == ["serfHealth", "web-b"]


def test_passing_excludes_warning_and_critical(log: Log) -> None:
    log.ok(reg("ok", svc("web"), (chk("s", service_id="web"),)))
    log.ok(reg("warn", svc("web"), (chk("s", "warning", service_id="web"),)))
    log.ok(reg("crit", svc("web"), (chk("serfHealth", "critical"),)))
    log.ok(reg("nochecks", svc("web")))
    _, all_rows = queries.health_service_nodes(log.store, None, "web")
    assert _nodes(all_rows) == ["crit", "nochecks", "ok", "warn"]
    _, passing = queries.health_service_nodes(log.store, None, "web", passing=True)
    assert _nodes(passing) == ["nochecks", "ok"]


def test_aggregated_status_is_the_worst_check(log: Log) -> None:
    log.ok(reg("n1", svc("web"), (chk("a"), chk("b", "warning", service_id="web"))))
    _, rows = queries.health_service_nodes(log.store, None, "web")
    assert queries.aggregated_status(rows[0].checks) == "warning"
    log.ok(reg("n1", checks=(chk("a", "maintenance"),)))
    _, rows = queries.health_service_nodes(log.store, None, "web")
    assert queries.aggregated_status(rows[0].checks) == "critical"
    assert queries.aggregated_status([]) == "passing"


def test_node_check_change_is_seen_by_every_service_on_the_node(log: Log) -> None:
    log.ok(reg("n1", svc("web"), (chk("serfHealth"),)))
    log.ok(reg("n1", svc("db")))
    log.ok(reg("n1", checks=(chk("serfHealth", "critical"),)))
    for name in ("web", "db"):
        idx, rows = queries.health_service_nodes(log.store, None, name, passing=True)
        assert idx == 3 and rows == []


def test_tag_filter_requires_all_tags(log: Log) -> None:
    log.ok(reg("n1", svc("web", tags=("a", "b"))))
    log.ok(reg("n2", svc("web", tags=("a",))))
    _, rows = queries.health_service_nodes(log.store, None, "web", tags=["a", "B"])
    assert _nodes(rows) == ["n1"]


def test_node_meta_filter(log: Log) -> None:
    log.ok(reg("n1", svc("web"), node_meta={"az": "a", "env": "prod"}))
    log.ok(reg("n2", svc("web"), node_meta={"az": "b", "env": "prod"}))
    _, rows = queries.health_service_nodes(log.store, None, "web", node_meta={"env": "prod"})
    assert _nodes(rows) == ["n1", "n2"]
    rows = queries.health_service_nodes(log.store, None, "web", node_meta={"az": "b"})[1]
    assert _nodes(rows) == ["n2"]


def test_health_connect_returns_proxies_for_destination_and_native(log: Log) -> None:
    def proxy(dest: str) -> object:
        return svc(
            f"{dest}-proxy",
            port=21000,
            kind=KIND_CONNECT_PROXY,
            proxy={"DestinationServiceName": dest},
        )

    log.ok(reg("n1", proxy("web"), (chk("p", "critical", service_id="web-proxy"),)))  # type: ignore[arg-type]
    log.ok(reg("n2", proxy("db")))  # type: ignore[arg-type]
    log.ok(reg("n3", svc("web", connect={"Native": True})))
    log.ok(reg("n4", svc("web")))
    idx, rows = queries.health_connect_service_nodes(log.store, None, "web")
    assert [(r.node.node, r.service.service) for r in rows] == [
        ("n1", "web-proxy"),
        ("n3", "web"),
    ]
    assert idx == 3
    _, passing = queries.health_connect_service_nodes(log.store, None, "web", passing=True)
    assert _nodes(passing) == ["n3"]


def test_connect_index_moves_when_proxy_deregistered(log: Log) -> None:
    log.ok(
        reg(
            "n1",
            svc("p", port=1, kind=KIND_CONNECT_PROXY, proxy={"DestinationServiceName": "web"}),
        )
    )
    log.ok(DeregisterRequest(node="n1", service_id="p"))
    idx, rows = queries.health_connect_service_nodes(log.store, None, "web")
    assert (idx, rows) == (2, [])


def test_health_checks_of_service_and_state(log: Log) -> None:
    log.ok(reg("n1", svc("web"), (chk("serfHealth"), chk("w1", "critical", service_id="web"))))
    log.ok(reg("n2", svc("web"), (chk("w1", "passing", service_id="web"),)))
    _, checks = queries.health_service_checks(log.store, None, "web")
    assert [(c.node, c.check_id) for c in checks] == [("n1", "w1"), ("n2", "w1")]
    _, crit = queries.health_checks_in_state(log.store, None, "critical")
    assert [(c.node, c.check_id) for c in crit] == [("n1", "w1")]
    _, every = queries.health_checks_in_state(log.store, None, "any")
    assert len(every) == 3


def test_health_entry_shape(log: Log) -> None:
    log.ok(reg("n1", svc("web", port=80), (chk("serfHealth"),)))
    _, rows = queries.health_service_nodes(log.store, None, "web")
    body = shapes.check_service_node_json(rows[0])
    assert set(body) == {"Node", "Service", "Checks"}
    assert body["Node"]["Node"] == "n1" and body["Service"]["Service"] == "web"
    assert body["Service"]["Port"] == 80
    assert body["Checks"][0]["CheckID"] == "serfHealth"
    assert body["Checks"][0]["Status"] == "passing"
