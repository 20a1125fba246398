"""The canary controller's decisions, pure (issue 19: canaries that finish
themselves).

Given a canary record, the canary subset's figures over the current step and
the wall time, ``decide`` says what the leader does now: wait, hold (the
interval is over but the step has fewer than ``MinRequests`` requests: stay
on it and judge it once the window since it began holds enough), move to
the next step, promote (the next step is 100 %), or roll back (a bound is
exceeded). A rollback does not wait for the interval's end: the controller
looks every ``CHECK_EVERY`` seconds and rolls back as soon as the step has
``MinRequests`` requests and a bound is exceeded. ``apply`` builds the next
record and ``splitter_body`` the service-splitter that goes with it; the
driver (meshd/agent/canary.py) writes both in one ``CanarySet`` command.

No clock, no I/O: time comes in as ``now`` (wall seconds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from registry.commands import MAX_CANARY_HISTORY
from registry.records import Canary, CanaryEvent
from registry.shapes import rfc3339

from ..durations import format_duration

__all__ = [
    "CHECK_EVERY",
    "Decision",
    "StatsSource",
    "SubsetFigures",
    "apply",
    "canary_json",
    "decide",
    "event_json",
    "overdue_intervals",
    "splitter_body",
    "stats_window",
]

# How often the controller looks at a running canary's figures between steps.
CHECK_EVERY = 1.0
# mesh_stats answers windows of at most an hour.
MAX_WINDOW = 3600.0


class SubsetFigures(Protocol):
    """What the controller reads of ``meshd.agent.mesh_stats.SubsetStats``."""

    @property
    def requests(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def p99_ms(self) -> float | None: ...
    @property
    def error_rate(self) -> float: ...


class StatsSource(Protocol):
    """The mesh's request figures of one subset over the last ``window``
    seconds, aggregated across the cluster (``MeshStats``)."""

    async def subset_stats(self, service: str, subset: str, window: float) -> SubsetFigures: ...


@dataclass(frozen=True)
class Decision:
    """What to do now (``kind``), why, and when to look again (wall seconds)."""

    kind: str  # none | wait | hold | step | promote | rollback
    reason: str = ""
    next_check: float = math.inf


def _pct(rate: float) -> str:
    return f"{rate * 100:.2f}%"


def _breach(rec: Canary, stats: SubsetFigures) -> str:
    """The first bound ``stats`` exceeds, named with the figures, or ""."""
    if stats.error_rate > rec.max_error_rate:
        return (
            f"MaxErrorRate exceeded: error rate {_pct(stats.error_rate)} > "
            f"{_pct(rec.max_error_rate)} ({stats.errors} errors in {stats.requests} requests)"
        )
    p99 = stats.p99_ms
    if p99 is not None and p99 > rec.max_p99 * 1000:
        return (
            f"MaxP99 exceeded: p99 {p99:.1f}ms > {format_duration(rec.max_p99)} "
            f"({stats.requests} requests)"
        )
    return ""


def step_due(rec: Canary) -> float:
    """When the current step's interval ends (wall seconds)."""
    return rec.step_started_at + rec.interval


def overdue_intervals(rec: Canary, now: float) -> int:
    """How many whole intervals past its end the current step is (a held
    step is logged once per interval)."""
    return max(0, math.floor((now - step_due(rec)) / rec.interval))


def stats_window(rec: Canary, now: float) -> float:
    """The window to ask figures for: the time spent on this step so far."""
    return min(max(now - rec.step_started_at, 1.0), MAX_WINDOW)


def decide(rec: Canary, stats: SubsetFigures, now: float) -> Decision:
    """The controller's next move for ``rec`` given ``stats`` of its To
    subset since the step started."""
    if rec.state != "running":
        return Decision("none")
    due = step_due(rec)
    enough = stats.requests >= rec.min_requests
    breach = _breach(rec, stats) if enough else ""
    if breach:
        return Decision("rollback", breach)
    if now < due:
        return Decision("wait", next_check=min(due, now + CHECK_EVERY))
    if not enough:
        # Stay on the step: it is judged once the window since it began holds enough.
        reason = f"too few requests: {stats.requests} < MinRequests {rec.min_requests}"
        return Decision("hold", reason, now + CHECK_EVERY)
    nxt = rec.step + 1
    if nxt >= len(rec.steps) or rec.steps[nxt] >= 100:
        return Decision("promote", f"all steps passed; {rec.to_subset} at 100%")
    return Decision("step", f"step {rec.step} passed", now + rec.interval)


def _event(
    rec: Canary, kind: str, reason: str, now: float, stats: SubsetFigures | None
) -> CanaryEvent:
    step = rec.step
    if kind == "step":
        step += 1
    elif kind == "promote":
        step = len(rec.steps) - 1
    weight = rec.steps[step] if kind != "promote" else 100.0
    if stats is None:
        return CanaryEvent(now, step, weight, kind, reason)
    return CanaryEvent(
        now,
        step,
        weight,
        kind,
        reason,
        requests=stats.requests,
        errors=stats.errors,
        error_rate=stats.error_rate,
        p99_ms=stats.p99_ms,
    )


def apply(
    rec: Canary, kind: str, reason: str, now: float, stats: SubsetFigures | None = None
) -> Canary:
    """The record after ``kind`` (step, promote, rollback, pause, resume,
    abort) at ``now``, with the event in History."""
    ev = _event(rec, kind, reason, now, stats)
    history = (*rec.history, ev)[-MAX_CANARY_HISTORY:]
    last = ev if stats is not None else rec.last
    new = replace(rec, history=history, last=last, reason=reason)
    if kind == "step":
        return replace(new, step=ev.step, step_started_at=now, reason="")
    if kind == "promote":
        return replace(new, step=ev.step, state="promoted")
    if kind == "rollback":
        return replace(new, state="rolled_back")
    if kind == "abort":
        return replace(new, state="aborted")
    if kind == "pause":
        return replace(new, state="paused")
    if kind == "resume":
        # The step starts over: its figures are judged from now on.
        return replace(new, state="running", step_started_at=now, reason="")
    raise ValueError(f"unknown canary event {kind!r}")


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def splitter_body(rec: Canary, existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The service-splitter body for ``rec`` (its other fields, such as Meta,
    kept from ``existing``): From gets 100 - weight, To the weight."""
    weight = rec.weight
    splits = [
        {"Weight": _num(100 - weight), "ServiceSubset": rec.from_subset},
        {"Weight": _num(weight), "ServiceSubset": rec.to_subset},
    ]
    return {**(existing or {}), "Splits": splits}


def event_json(ev: CanaryEvent) -> dict[str, Any]:
    """One History entry, with the contract's field names."""
    return {
        "Time": rfc3339(ev.time),
        "Step": ev.step,
        "Weight": _num(ev.weight),
        "Event": ev.event,
        "Reason": ev.reason,
        "Requests": ev.requests,
        "Errors": ev.errors,
        "ErrorRate": ev.error_rate,
        "P99Ms": ev.p99_ms,
    }


def canary_json(rec: Canary) -> dict[str, Any]:
    """The canary JSON of the API (CONTRACTS.md, "Canaries")."""
    last = rec.last
    return {
        "Service": rec.service,
        "From": rec.from_subset,
        "To": rec.to_subset,
        "Steps": [_num(s) for s in rec.steps],
        "Step": rec.step,
        "Weight": _num(rec.weight),
        "State": rec.state,
        "Interval": format_duration(rec.interval),
        "MaxErrorRate": rec.max_error_rate,
        "MaxP99": format_duration(rec.max_p99),
        "MinRequests": rec.min_requests,
        "StepStartedAt": rfc3339(rec.step_started_at),
        "Reason": rec.reason,
        # Always an object (zeros before the first judged step), so readers need no null check.
        "Last": {
            "Requests": last.requests if last else 0,
            "Errors": last.errors if last else 0,
            "ErrorRate": last.error_rate if last else 0.0,
            "P99Ms": last.p99_ms if last else None,
        },
        "History": [event_json(e) for e in rec.history],
        "CreateIndex": rec.create_index,
        "ModifyIndex": rec.modify_index,
    }
