"""Upstream instance choice (pure)."""

from __future__ import annotations

from connect.proxy.balancer import Balancer, Endpoint, endpoints_from_health

A = Endpoint("10.0.0.1", 21000)
B = Endpoint("10.0.0.2", 21000)
C = Endpoint("10.0.0.3", 21000)


def test_round_robin_cycles_through_instances() -> None:
    bal = Balancer()
    bal.set_endpoints([C, A, B])
    assert [bal.pick() for _ in range(6)] == [A, B, C, A, B, C]


def test_retry_skips_instances_already_tried() -> None:
    bal = Balancer()
    bal.set_endpoints([A, B])
    first = bal.pick()
    second = bal.pick(exclude=[first])
    assert {first, second} == {A, B}
    assert bal.pick(exclude=[A, B]) is None


def test_least_conn_prefers_the_idlest_and_spreads_ties() -> None:
    bal = Balancer("least_conn")
    bal.set_endpoints([A, B, C])
    bal.acquire(A)
    bal.acquire(A)
    bal.acquire(B)
    assert bal.pick() == C
    bal.acquire(C)
    assert bal.pick() in (B, C)
    bal.release(A)
    bal.release(A)
    assert bal.pick() == A


def test_counts_survive_an_endpoint_update() -> None:
    bal = Balancer("least_conn")
    bal.set_endpoints([A, B])
    bal.acquire(A)
    bal.set_endpoints([A, B, C])
    assert bal.active(A) == 1
    bal.set_endpoints([B])
    assert bal.active(A) == 1  # still open; forgotten once released
    bal.release(A)
    assert bal.active(A) == 0 and bal.pick() == B


def test_health_entries_use_service_address_then_node_address() -> None:
    entries = [
        {
            "Node": {"Node": "n1", "Address": "10.0.0.9"},
            "Service": {"ID": "a", "Address": "", "Port": 1},
        },
        {
            "Node": {"Node": "n2", "Address": "10.0.0.8"},
            "Service": {"ID": "b", "Address": "10.1.1.1", "Port": 2},
        },
        {"Node": {"Node": "n3"}, "Service": {"ID": "c", "Port": 0}},
        "garbage",
    ]
    assert [(e.host, e.port) for e in endpoints_from_health(entries)] == [
        ("10.0.0.9", 1),
        ("10.1.1.1", 2),
    ]
