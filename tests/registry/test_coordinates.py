"""Replicated network coordinates: batched writes, reads, watches, validation."""

from __future__ import annotations

from registry.commands import CoordinateBatchUpdate, DeregisterRequest
from registry.errors import ErrorCode
from registry.records import Coordinate
from registry.state.coordinates import coordinate_list, coordinate_node
from registry.state.watch import WatchSet

from .builders import Log, reg

VEC = (0.1,) * 8


def test_a_batch_is_one_write_and_the_last_update_per_key_wins(log: Log) -> None:
    assert coordinate_list(log.store, None) == (1, [])
    log.ok(reg("n1"))
    log.ok(reg("n2"))
    ws = WatchSet()
    coordinate_list(log.store, ws)
    fired: list[int] = []
    ws.register(lambda: fired.append(1))
    log.ok(
        CoordinateBatchUpdate(
            updates=(
                Coordinate("n2", vec=VEC),
                Coordinate("n1", vec=VEC, height=1.0),
                Coordinate("n1", "seg", vec=VEC),
                Coordinate("n1", vec=VEC, height=2.0),
            )
        )
    )
    idx, rows = coordinate_list(log.store, None)
    assert fired == [1] and idx == log.index
    assert [(c.node, c.segment, c.height) for c in rows] == [
        ("n1", "", 2.0),
        ("n1", "seg", 0.0),
        ("n2", "", 0.0),
    ]
    assert [c.segment for c in coordinate_node(log.store, None, "n1")[1]] == ["", "seg"]
    assert coordinate_node(log.store, None, "n3")[1] == []


def test_unknown_nodes_are_dropped_and_deregistering_a_node_drops_its_own(log: Log) -> None:
    log.ok(reg("n1"))
    log.ok(CoordinateBatchUpdate(updates=(Coordinate("n1", vec=VEC), Coordinate("ghost", vec=VEC))))
    log.ok(CoordinateBatchUpdate(updates=(Coordinate("n1", "seg", vec=VEC),)))
    assert [(c.node, c.segment) for c in coordinate_list(log.store, None)[1]] == [
        ("n1", ""),
        ("n1", "seg"),
    ]
    before = coordinate_list(log.store, None)[0]
    log.ok(DeregisterRequest(node="n1"))
    idx, rows = coordinate_list(log.store, None)
    assert rows == [] and idx > before


def test_non_finite_or_nameless_updates_are_refused_whole(log: Log) -> None:
    good = Coordinate("n1", vec=VEC)
    for bad, field in (
        (Coordinate("", vec=VEC), "Coordinates[1].Node"),
        (Coordinate("n2", vec=(float("nan"),) * 8), "Coordinates[1].Coord"),
        (Coordinate("n2", vec=VEC, error=float("inf")), "Coordinates[1].Coord"),
    ):
        result = log.apply(CoordinateBatchUpdate(updates=(good, bad)))
        assert result.error == ErrorCode.INVALID and field in result.message
    assert coordinate_list(log.store, None)[1] == []
