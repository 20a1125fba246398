"""CA roots and configuration: CAS, and the API-facing reads never return private keys."""

from __future__ import annotations

import json

from registry import queries, shapes
from registry.commands import CAConfigSet, CARootsSet
from registry.errors import ErrorCode
from registry.records import CAConfig, CARoot

from .builders import Log

KEY = "-----BEGIN EC PRIVATE KEY-----\nSECRET\n-----END EC PRIVATE KEY-----"


def root(id: str, active: bool = True) -> CARoot:
    return CARoot(id, name=f"root {id}", root_cert="CERT-" + id, signing_key=KEY, active=active)


def test_roots_cas_on_table_index(log: Log) -> None:
    log.ok(CAConfigSet(config=CAConfig(cluster_id="abc", config={"PrivateKey": KEY})))
    assert log.apply(CARootsSet(roots=(root("r1"),), cas=0))
    result = log.apply(CARootsSet(roots=(root("r2"),), cas=0))
    assert not result and result.error is ErrorCode.CAS_CONFLICT
    log.ok(CARootsSet(roots=(root("r1", active=False), root("r2")), cas=2))
    idx, roots = queries.ca_roots(log.store, None)
    assert idx == 4 and roots.active_root_id == "r2" and roots.trust_domain == "abc.consul"
    r1 = roots.roots[0]
    assert (r1.id, r1.create_index, r1.modify_index) == ("r1", 2, 4)


def test_api_reads_never_return_private_keys(log: Log) -> None:
    log.ok(
        CAConfigSet(
            config=CAConfig(
                cluster_id="abc", config={"PrivateKey": KEY, "LeafCertTTL": "72h"}, state={"k": KEY}
            )
        )
    )
    log.ok(CARootsSet(roots=(root("r1"),), cas=0))
    _, roots = queries.ca_roots(log.store, None)
    _, config = queries.ca_config(log.store, None)
    assert config is not None
    for value in (roots, config):
        assert "SECRET" not in repr(value)
    for body in (shapes.ca_roots_json(roots), shapes.ca_config_json(config)):
        assert "SECRET" not in json.dumps(body)
    assert shapes.ca_config_json(config)["Config"] == {"LeafCertTTL": "72h"}
    # the leader's internal reads keep them
    assert queries.ca_roots_internal(log.store, None)[1].roots[0].signing_key == KEY
    internal = queries.ca_config_internal(log.store, None)[1]
    assert internal is not None and internal.config["PrivateKey"] == KEY


def test_config_cas(log: Log) -> None:
    log.ok(CAConfigSet(config=CAConfig(cluster_id="a")))
    assert not log.apply(CAConfigSet(config=CAConfig(cluster_id="b"), cas=7))
    assert log.apply(CAConfigSet(config=CAConfig(cluster_id="b"), cas=1))
    _, config = queries.ca_config(log.store, None)
    assert config is not None and (config.cluster_id, config.create_index, config.modify_index) == (
        "b",
        1,
        3,
    )


def test_at_most_one_active_root(log: Log) -> None:
    result = log.apply(CARootsSet(roots=(root("a"), root("b")), cas=0))
    assert result.error is ErrorCode.INVALID and "active" in result.message
