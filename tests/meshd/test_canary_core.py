"""The canary controller's decisions, pure: record + figures + now -> action."""

from __future__ import annotations

from dataclasses import dataclass, replace

from meshd.values.canary_core import (
    apply,
    canary_json,
    decide,
    overdue_intervals,
    splitter_body,
    stats_window,
)
from registry.records import Canary

T0 = 1_800_000_000.0
REC = Canary(
    "api",
    "v1",
    "v2",
    (5.0, 25.0, 100.0),
    interval=30.0,
    max_error_rate=0.01,
    max_p99=0.3,
    min_requests=20,
    step_started_at=T0,
)


@dataclass(frozen=True)
class Stats:
    requests: int = 100
    errors: int = 0
    p99_ms: float | None = 10.0
    rps: float = 3.3

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def test_healthy_step_waits_for_the_interval_then_steps() -> None:
    assert decide(REC, Stats(), T0 + 10).kind == "wait"
    assert decide(REC, Stats(), T0 + 10).next_check == T0 + 11
    d = decide(REC, Stats(), T0 + 30)
    assert d.kind == "step"
    new = apply(REC, d.kind, d.reason, T0 + 30, Stats())
    assert (new.step, new.weight, new.step_started_at, new.state) == (1, 25.0, T0 + 30, "running")
    assert [(e.step, e.weight, e.event) for e in new.history] == [(1, 25.0, "step")]


def test_the_step_before_100_promotes() -> None:
    rec = replace(REC, step=1)
    d = decide(rec, Stats(), T0 + 31)
    assert d.kind == "promote"
    new = apply(rec, d.kind, d.reason, T0 + 31, Stats())
    assert (new.state, new.step, new.weight) == ("promoted", 2, 100.0)
    assert splitter_body(new)["Splits"] == [
        {"Weight": 0, "ServiceSubset": "v1"},
        {"Weight": 100, "ServiceSubset": "v2"},
    ]


def test_errors_over_the_bound_roll_back_before_the_interval_ends() -> None:
    d = decide(REC, Stats(requests=50, errors=10), T0 + 3)
    assert d.kind == "rollback"
    assert d.reason == (
        "MaxErrorRate exceeded: error rate 20.00% > 1.00% (10 errors in 50 requests)"
    )
    new = apply(REC, d.kind, d.reason, T0 + 3, Stats(requests=50, errors=10))
    assert (new.state, new.weight, new.reason) == ("rolled_back", 0.0, d.reason)
    assert splitter_body(new)["Splits"][0] == {"Weight": 100, "ServiceSubset": "v1"}
    assert new.last is not None and new.last.error_rate == 0.2


def test_p99_over_the_bound_rolls_back_naming_it() -> None:
    d = decide(REC, Stats(p99_ms=450.0), T0 + 30)
    assert (d.kind, d.reason) == ("rollback", "MaxP99 exceeded: p99 450.0ms > 300ms (100 requests)")


def test_too_few_requests_hold_the_step_and_never_roll_back() -> None:
    few = Stats(requests=5, errors=5)
    assert decide(REC, few, T0 + 5).kind == "wait"
    d = decide(REC, few, T0 + 45)
    assert d.kind == "hold" and "5 < MinRequests 20" in d.reason
    assert d.next_check == T0 + 46
    assert (overdue_intervals(REC, T0 + 45), overdue_intervals(REC, T0 + 61)) == (0, 1)
    # Enough requests over the longer window: judged then.
    assert decide(REC, Stats(requests=25), T0 + 52).kind == "step"


def test_paused_and_finished_canaries_are_left_alone() -> None:
    for state in ("paused", "promoted", "rolled_back", "aborted"):
        assert decide(replace(REC, state=state), Stats(errors=99), T0 + 99).kind == "none"


def test_resume_restarts_the_step_and_abort_sends_everything_back() -> None:
    paused = apply(REC, "pause", "", T0 + 10)
    resumed = apply(paused, "resume", "", T0 + 100)
    assert (resumed.state, resumed.step_started_at) == ("running", T0 + 100)
    aborted = apply(resumed, "abort", "by operator", T0 + 101)
    assert (aborted.state, aborted.weight) == ("aborted", 0.0)
    assert [e.event for e in aborted.history] == ["pause", "resume", "abort"]


def test_window_covers_the_step_so_far_within_bounds() -> None:
    assert stats_window(REC, T0 + 12.5) == 12.5
    assert stats_window(REC, T0) == 1.0
    assert stats_window(replace(REC, step_started_at=0.0), T0) == 3600.0


def test_json_has_the_contract_fields() -> None:
    rec = apply(REC, "step", "", T0 + 30, Stats(requests=300, p99_ms=12.0))
    out = canary_json(replace(rec, create_index=10, modify_index=42))
    assert out["Steps"] == [5, 25, 100] and out["Weight"] == 25 and out["Step"] == 1
    assert (out["Interval"], out["MaxP99"], out["State"]) == ("30s", "300ms", "running")
    assert out["Last"] == {"Requests": 300, "Errors": 0, "ErrorRate": 0.0, "P99Ms": 12.0}
    assert out["History"][0]["Event"] == "step" and out["History"][0]["Time"].endswith("Z")
    assert (out["CreateIndex"], out["ModifyIndex"]) == (10, 42)
