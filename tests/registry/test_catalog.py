"""Catalog register/deregister semantics (Consul /v1/catalog docs and state/catalog.go)."""

from __future__ import annotations

from registry import queries, shapes
from registry.commands import DeregisterRequest, RegisterRequest
from registry.errors import ErrorCode
from registry.records import KIND_CONNECT_PROXY, Weights

from .builders import Log, chk, reg, svc

NODE_ID = "5e1a3b1c-1111-2222-3333-444455556666"


def test_register_node_service_and_checks_in_one_command(log: Log) -> None:
    log.ok(
        reg(
            "n1",
            svc("web", port=8080, tags=("v1",)),
            (chk("serfHealth"), chk("web-http", service_id="web")),
            node_meta={"rack": "r1"},
        )
    )
    idx, ns = queries.catalog_node(log.store, None, "n1")
    assert ns is not None and idx == 1
    assert ns.node.meta == {"rack": "r1"} and ns.node.create_index == 1
    assert [s.id for s in ns.services] == ["web"]  # ID defaults to the service name
    _, checks = queries.health_node_checks(log.store, None, "n1")
    assert {(c.check_id, c.service_name, c.service_tags) for c in checks} == {
        ("serfHealth", "", ()),
        ("web-http", "web", ("v1",)),
    }


def test_register_is_atomic_when_a_check_names_an_unknown_service(log: Log) -> None:
    result = log.apply(reg("n1", svc("web"), (chk("c", service_id="nope"),)))
    assert not result and result.error is ErrorCode.NOT_FOUND
    assert "Missing service registration" in result.message
    _, nodes = queries.catalog_nodes(log.store, None)
    assert nodes == []  # node and service were rolled back
    assert log.store.indexes == {}


def test_check_status_defaults_to_critical(log: Log) -> None:
    log.ok(reg("n1", checks=(chk("c", status=""),)))
    _, checks = queries.health_node_checks(log.store, None, "n1")
    assert checks[0].status == "critical"


def test_identical_reregistration_does_not_bump_indexes(log: Log) -> None:
    cmd = reg("n1", svc("web"), (chk("c", service_id="web"),))
    log.ok(cmd)
    before = dict(log.store.indexes)
    log.ok(cmd)
    assert log.store.indexes == before
    _, ns = queries.catalog_node(log.store, None, "n1")
    assert ns is not None and ns.services[0].modify_index == 1


def test_update_keeps_create_index_and_moves_modify_index(log: Log) -> None:
    log.ok(reg("n1", svc("web", port=80)))
    log.ok(reg("n1", svc("web", port=81)))
    idx, rows = queries.catalog_service_nodes(log.store, None, "web")
    assert idx == 2
    assert (rows[0].service.create_index, rows[0].service.modify_index) == (1, 2)
    assert rows[0].service.port == 81


def test_deregister_node_removes_services_and_checks(log: Log) -> None:
    log.ok(reg("n1", svc("web"), (chk("serfHealth"), chk("c", service_id="web"))))
    log.ok(reg("n2", svc("web")))
    log.ok(DeregisterRequest(node="n1"))
    _, rows = queries.catalog_service_nodes(log.store, None, "web")
    assert [r.node.node for r in rows] == ["n2"]
    assert queries.health_node_checks(log.store, None, "n1")[1] == []
    assert queries.catalog_node(log.store, None, "n1")[1] is None


def test_deregister_service_id_only_removes_that_service_and_its_checks(log: Log) -> None:
    log.ok(reg("n1", svc("web"), (chk("serfHealth"), chk("c", service_id="web"))))
    log.ok(reg("n1", svc("db")))
    log.ok(DeregisterRequest(node="n1", service_id="web", check_id="serfHealth"))
    _, ns = queries.catalog_node(log.store, None, "n1")
    assert ns is not None and [s.id for s in ns.services] == ["db"]
    _, checks = queries.health_node_checks(log.store, None, "n1")
    assert [c.check_id for c in checks] == ["serfHealth"]  # ServiceID wins over CheckID


def test_deregister_check_id_only_removes_that_check(log: Log) -> None:
    log.ok(reg("n1", svc("web"), (chk("a"), chk("b", service_id="web"))))
    log.ok(DeregisterRequest(node="n1", check_id="b"))
    _, checks = queries.health_node_checks(log.store, None, "n1")
    assert [c.check_id for c in checks] == ["a"]
    assert queries.catalog_node(log.store, None, "n1")[1] is not None


def test_deregister_of_unknown_things_is_a_no_op(log: Log) -> None:
    assert log.apply(DeregisterRequest(node="ghost"))
    assert log.apply(DeregisterRequest(node="ghost", service_id="x"))
    assert log.store.indexes == {}


def test_service_requires_existing_node_when_skip_node_update(log: Log) -> None:
    log.ok(reg("n1"))
    log.ok(RegisterRequest(node="n1", skip_node_update=True, service=svc("web")))
    _, ns = queries.catalog_node(log.store, None, "n1")
    assert ns is not None and ns.node.address == "10.0.0.1"


def test_node_id_conflict_is_refused(log: Log) -> None:
    log.ok(reg("n1", id=NODE_ID))
    result = log.apply(reg("n2", id=NODE_ID))
    assert result.error is ErrorCode.CONFLICT
    assert [n.node for n in queries.catalog_nodes(log.store, None)[1]] == ["n1"]


def test_catalog_services_lists_names_with_union_of_tags(log: Log) -> None:
    log.ok(reg("n1", svc("web", tags=("b", "a"))))
    log.ok(reg("n2", svc("web", tags=("c",)), node_meta={"env": "prod"}))
    log.ok(reg("n2", svc("db"), node_meta={"env": "prod"}))  # a register rewrites node meta
    _, services = queries.catalog_services(log.store, None)
    assert services == {"db": [], "web": ["a", "b", "c"]}
    _, prod = queries.catalog_services(log.store, None, {"env": "prod"})
    assert prod == {"db": [], "web": ["c"]}


def test_catalog_service_filters_tags_all_and_case_insensitively(log: Log) -> None:
    log.ok(reg("n1", svc("web", tags=("Primary", "v1"))))
    log.ok(reg("n2", svc("web", tags=("v1",))))
    _, rows = queries.catalog_service_nodes(log.store, None, "web", tags=["primary", "v1"])
    assert [r.node.node for r in rows] == ["n1"]
    _, rows = queries.catalog_service_nodes(log.store, None, "web", tags=["v1"])
    assert [r.node.node for r in rows] == ["n1", "n2"]


def test_catalog_nodes_filter_by_meta_and_sorted(log: Log) -> None:
    log.ok(reg("b", node_meta={"env": "prod"}))
    log.ok(reg("a", node_meta={"env": "dev"}))
    log.ok(reg("c", node_meta={"env": "prod", "os": "linux"}))
    _, nodes = queries.catalog_nodes(log.store, None)
    assert [n.node for n in nodes] == ["a", "b", "c"]
    _, nodes = queries.catalog_nodes(log.store, None, {"env": "prod", "os": "linux"})
    assert [n.node for n in nodes] == ["c"]


def test_service_query_index_only_moves_for_that_service(log: Log) -> None:
    log.ok(reg("n1", svc("web")))
    log.ok(reg("n1", svc("db")))
    assert queries.catalog_service_nodes(log.store, None, "web")[0] == 1
    assert queries.catalog_service_nodes(log.store, None, "db")[0] == 2
    log.ok(reg("n1", checks=(chk("serfHealth", status="critical"),)))
    assert queries.catalog_service_nodes(log.store, None, "web")[0] == 3  # node check fan-out


def test_index_of_vanished_service_falls_back_without_going_backwards(log: Log) -> None:
    log.ok(reg("n1", svc("web")))
    log.ok(DeregisterRequest(node="n1", service_id="web"))
    assert "service:web" not in log.store.indexes
    assert queries.catalog_service_nodes(log.store, None, "web") == (2, [])
    assert queries.catalog_service_nodes(log.store, None, "never")[0] == 2


def test_connect_catalog_returns_proxies_and_native(log: Log) -> None:
    proxy = svc(
        "web-sidecar-proxy",
        port=21000,
        kind=KIND_CONNECT_PROXY,
        proxy={"DestinationServiceName": "web", "LocalServicePort": 8080},
    )
    log.ok(reg("n1", proxy))
    log.ok(reg("n2", svc("web", connect={"Native": True})))
    log.ok(reg("n3", svc("web")))
    _, rows = queries.catalog_connect_service_nodes(log.store, None, "web")
    assert [(r.node.node, r.service.service) for r in rows] == [
        ("n1", "web-sidecar-proxy"),
        ("n2", "web"),
    ]


def test_service_reregistered_with_new_tags_updates_its_checks(log: Log) -> None:
    log.ok(reg("n1", svc("web", tags=("a",)), (chk("c", service_id="web"),)))
    log.ok(reg("n1", svc("web", tags=("b",))))
    _, checks = queries.health_service_checks(log.store, None, "web")
    assert checks[0].service_tags == ("b",)


def test_catalog_shapes_use_consul_field_names(log: Log) -> None:
    log.ok(reg("n1", svc("web", port=80, tags=("t",), weights=Weights(3, 1))))
    _, rows = queries.catalog_service_nodes(log.store, None, "web")
    body = shapes.service_node_json(rows[0])
    assert body["Node"] == "n1" and body["Address"] == "10.0.0.1"
    assert body["ServiceID"] == "web" and body["ServiceName"] == "web"
    assert body["ServiceTags"] == ["t"] and body["ServicePort"] == 80
    assert body["ServiceWeights"] == {"Passing": 3, "Warning": 1}
    assert (body["CreateIndex"], body["ModifyIndex"]) == (1, 1)
    node_body = shapes.node_services_json(queries.catalog_node(log.store, None, "n1")[1])  # type: ignore[arg-type]
    assert set(node_body["Services"]) == {"web"}


def test_service_names_match_without_regard_to_case_as_in_consul(log: Log) -> None:
    # Consul's services table indexes ServiceName lower-cased (memdb Lowercase: true).
    log.ok(reg("n1", svc("Web", port=1)))
    log.ok(reg("n2", svc("web", port=2), checks=(chk("c2", service_id="web"),)))
    _, rows = queries.catalog_service_nodes(log.store, None, "WEB")
    assert [(r.node.node, r.service.service) for r in rows] == [("n1", "Web"), ("n2", "web")]
    _, healthy = queries.health_service_nodes(log.store, None, "wEb")
    assert [r.node.node for r in healthy] == ["n1", "n2"]
    _, checks = queries.health_service_checks(log.store, None, "WEB")
    assert [c.check_id for c in checks] == ["c2"]
    # Listed as registered, one entry per spelling, as Consul does.
    assert set(queries.catalog_services(log.store, None)[1]) == {"Web", "web"}
    # One index (and watch) key for every spelling.
    before = queries.catalog_service_nodes(log.store, None, "Web")[0]
    log.ok(reg("n3", svc("WEB")))
    assert queries.catalog_service_nodes(log.store, None, "web")[0] > before
    log.ok(DeregisterRequest(node="n3", service_id="WEB"))
    assert len(queries.catalog_service_nodes(log.store, None, "web")[1]) == 2


def test_connect_names_match_without_regard_to_case(log: Log) -> None:
    proxy = svc(
        "api-sidecar-proxy",
        port=21000,
        kind=KIND_CONNECT_PROXY,
        proxy={"DestinationServiceName": "Api", "LocalServicePort": 8080},
    )
    log.ok(reg("n1", proxy))
    _, rows = queries.catalog_connect_service_nodes(log.store, None, "api")
    assert [r.service.service for r in rows] == ["api-sidecar-proxy"]
    _, rows2 = queries.health_connect_service_nodes(log.store, None, "API")
    assert [r.service.service for r in rows2] == ["api-sidecar-proxy"]
