"""Fault injection and mirroring decisions from a seeded rng."""

from __future__ import annotations

import random

import pytest

from connect.l7.fault import (
    ABORT_BODY,
    AbortFault,
    BandwidthFault,
    DelayFault,
    FaultConfig,
    decide_fault,
)
from connect.l7.mirror import MirrorPolicy, shadow_headers, shadow_host, should_mirror
from connect.l7.request import Headers


def test_abort_50_and_delay_25_percent_over_10000_requests() -> None:
    config = FaultConfig(
        delay=DelayFault(duration_ms=100, percentage=25),
        abort=AbortFault(http_status=503, percentage=50),
    )
    rng = random.Random(11)
    decisions = [decide_fault(config, rng) for _ in range(10_000)]
    aborted = sum(d.abort_status == 503 for d in decisions) / 100
    delayed = sum(d.delay_s == 0.1 for d in decisions) / 100
    assert 48 <= aborted <= 52
    assert 23 <= delayed <= 27


def test_abort_answer_is_envoys_local_reply() -> None:
    d = decide_fault(FaultConfig(abort=AbortFault(http_status=418)), random.Random(0))
    assert d.abort_response() == (418, [("content-type", "text/plain")], ABORT_BODY)
    grpc = decide_fault(FaultConfig(abort=AbortFault(grpc_status=14)), random.Random(0))
    status, headers, _ = grpc.abort_response()  # type: ignore[misc]
    assert status == 200 and ("grpc-status", "14") in headers


def test_zero_percent_and_no_config_inject_nothing() -> None:
    rng = random.Random(2)
    config = FaultConfig(
        delay=DelayFault(10, 0), abort=AbortFault(500, percentage=0), bandwidth=BandwidthFault(1, 0)
    )
    assert not any(decide_fault(config, rng).any for _ in range(1_000))
    assert not decide_fault(None, rng).any


def test_bandwidth_limit_applies_to_its_percentage() -> None:
    rng = random.Random(4)
    config = FaultConfig(bandwidth=BandwidthFault(limit_kib_per_s=64, percentage=10))
    limited = sum(decide_fault(config, rng).bandwidth_kib_per_s == 64 for _ in range(10_000))
    assert 900 <= limited <= 1_100


def test_invalid_fault_config_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match=r"Abort\.Percentage"):
        FaultConfig(abort=AbortFault(503, percentage=120))
    with pytest.raises(ValueError, match=r"Abort\.HttpStatus"):
        FaultConfig(abort=AbortFault(http_status=42))


def test_decisions_are_deterministic_for_a_seed() -> None:
    config = FaultConfig(abort=AbortFault(503, percentage=30))
    a, b = random.Random(8), random.Random(8)
    assert [decide_fault(config, a) for _ in range(50)] == [
        decide_fault(config, b) for _ in range(50)
    ]


@pytest.mark.parametrize(
    ("host", "shadow"),
    [
        ("reviews", "reviews-shadow"),
        ("reviews:8080", "reviews-shadow:8080"),
        ("[::1]:18080", "[::1]-shadow:18080"),
    ],
)
def test_shadow_host_appends_suffix_before_port(host: str, shadow: str) -> None:
    assert shadow_host(host) == shadow


def test_mirror_percentage_and_shadow_headers() -> None:
    rng = random.Random(6)
    policy = MirrorPolicy("api-v2", percentage=20)
    share = sum(should_mirror(policy, rng) for _ in range(10_000)) / 100
    assert 18 <= share <= 22
    assert all(should_mirror(MirrorPolicy("v2"), rng) for _ in range(100))
    assert not should_mirror(None, rng)
    original = Headers([("Host", "api:9090"), ("x-a", "1")])
    copy = shadow_headers(original)
    assert copy.get("host") == "api-shadow:9090" and copy.get("x-a") == "1"
    assert original.get("host") == "api:9090"
