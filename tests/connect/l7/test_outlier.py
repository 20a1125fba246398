"""Outlier detection from PassiveHealthCheck under a fake clock."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect.l7.outlier import OutlierConfig, OutlierDetector

HOSTS = ("a", "b", "c")


def detector(**kw: float) -> OutlierDetector:
    cfg = OutlierConfig(**{"max_failures": 3, "base_ejection_time_s": 30.0, **kw})  # type: ignore[arg-type]
    det = OutlierDetector(cfg, random.Random(0))
    det.set_hosts(HOSTS)
    return det


def fail(det: OutlierDetector, host: str, times: int, now: float, status: int = 500) -> None:
    for _ in range(times):
        det.report(host, status, now)


def test_host_with_max_failures_consecutive_5xx_is_ejected_and_returns_after_base_time() -> None:
    det = detector()
    fail(det, "a", 2, now=0.0)
    assert not det.is_ejected("a", 0.0)
    ejection = det.report("a", 503, now=1.0)
    assert ejection is not None and ejection.until == 31.0
    assert det.ejected(1.0) == {"a"}
    assert det.is_ejected("a", 30.9)
    assert not det.is_ejected("a", 31.0)
    assert det.ejected(31.0) == frozenset()


def test_a_success_resets_the_consecutive_count() -> None:
    det = detector()
    fail(det, "a", 2, now=0.0)
    det.report("a", 200, now=0.0)
    fail(det, "a", 2, now=0.0)
    assert det.ejected(0.0) == frozenset()


def test_local_failures_count_as_5xx() -> None:
    det = detector()
    fail(det, "b", 3, now=0.0, status=None)  # type: ignore[arg-type]
    assert det.ejected(0.0) == {"b"}


def test_second_ejection_lasts_twice_as_long_and_the_multiplier_decays() -> None:
    det = detector(interval_s=10.0)
    fail(det, "a", 3, now=0.0)
    assert det.sweep(30.0) == ["a"]
    second = None
    for _ in range(3):
        second = det.report("a", 500, now=31.0)
    assert second is not None and second.times_ejected == 2
    assert second.until == 31.0 + 60.0
    assert det.sweep(91.0) == ["a"]
    for t in (101.0, 111.0):  # two healthy sweeps bring the multiplier back to 0
        det.sweep(t)
    third = None
    for _ in range(3):
        third = det.report("a", 500, now=112.0)
    assert third is not None and third.until == 112.0 + 30.0


def test_ejection_time_is_capped_at_300s() -> None:
    det = detector(base_ejection_time_s=200.0, max_ejection_percent=100)
    fail(det, "a", 3, now=0.0)
    det.is_ejected("a", 200.0)
    fail(det, "a", 3, now=200.0)
    assert det.ejections(200.0)[0].until == 200.0 + 300.0


def test_max_ejection_percent_never_ejects_the_last_host() -> None:
    det = detector(max_ejection_percent=100)
    for host in HOSTS:
        fail(det, host, 3, now=0.0)
    assert len(det.ejected(0.0)) == 2
    det2 = OutlierDetector(OutlierConfig(max_failures=1), random.Random(0))
    det2.set_hosts(["only"])
    assert det2.report("only", 500, now=0.0) is None
    assert det2.ejected(0.0) == frozenset()


def test_default_ten_percent_ejects_one_of_three_hosts_only() -> None:
    det = detector(max_ejection_percent=10)
    for host in HOSTS:
        fail(det, host, 3, now=0.0)
    assert det.ejected(0.0) == {"a"}


def test_enforcing_zero_never_ejects() -> None:
    det = detector(enforcing_consecutive_5xx=0)
    fail(det, "a", 30, now=0.0)
    assert det.ejected(0.0) == frozenset()


def test_introspection_lists_ejected_hosts_with_reason_and_until() -> None:
    det = detector()
    fail(det, "c", 3, now=5.0, status=502)
    [ejection] = det.ejections(6.0)
    assert (ejection.host, ejection.reason, ejection.until) == ("c", "consecutive_5xx", 35.0)
    assert ejection.last_status == 502 and ejection.times_ejected == 1
    assert det.ejections(35.0) == []


def test_removed_hosts_are_forgotten_and_sweep_is_due_each_interval() -> None:
    det = detector()
    fail(det, "a", 3, now=0.0)
    det.set_hosts(["b", "c"])
    assert det.ejected(0.0) == frozenset()
    assert det.due(0.0)
    det.sweep(0.0)
    assert not det.due(9.9) and det.due(10.0)


def test_invalid_config_uses_consul_texts() -> None:
    with pytest.raises(ValueError, match="max_ejection_percent must be a percentage"):
        OutlierConfig(max_ejection_percent=101)
    with pytest.raises(ValueError, match="interval cannot be negative"):
        OutlierConfig(interval_s=-1)


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["report", "sweep", "hosts", "ejected"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.sampled_from([200, 500, 503, None]),
        st.floats(0, 20),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(_STEPS)
def test_the_ejected_count_shortcut_agrees_with_the_hosts_state(steps: list[Any]) -> None:
    det = detector(max_failures=2, base_ejection_time_s=3.0, max_ejection_percent=100)
    now = 0.0
    for op, host, status, dt in steps:
        now += dt
        if op == "report":
            det.report(host, status, now)
        elif op == "sweep":
            det.sweep(now)
        elif op == "hosts":
            det.set_hosts(h for h in ("a", "b", "c", "d") if h != host)
        want = {h for h, s in det._hosts.items() if s.ejected_at is not None and now < s.until}
        assert det.ejected(now) == want
        assert det._ejected == len(want)
