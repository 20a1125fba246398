"""A canary's events and clock, shared by the leader's controller
(meshd.agent.canary) and the API's canary handlers (meshd.api.canary).

Every step, promotion and rollback is logged (one line, ``log_event``) and
fired as the user event ``meshd-canary`` (``event_payload``). Times are wall
seconds from ``wall_now``: the wall clock read once per trio run and
advanced by trio's clock after that (monotonic; fake under a MockClock).
"""

from __future__ import annotations

import json
import logging
import time

import trio
from trio.lowlevel import RunVar

from registry.records import Canary

from .canary_core import event_json

log = logging.getLogger("meshd.canary")

EVENT_NAME = "meshd-canary"

_ANCHOR: RunVar[tuple[float, float]] = RunVar("meshd_canary_wall_anchor")


def wall_now() -> float:
    """Wall seconds, read from the system clock once per trio run and then
    advanced by trio's (monotonic) clock."""
    try:
        wall, base = _ANCHOR.get()
    except LookupError:
        wall, base = time.time(), trio.current_time()
        _ANCHOR.set((wall, base))
    return wall + trio.current_time() - base


def log_event(rec: Canary) -> None:
    """One log line for the last History entry of ``rec``."""
    ev = rec.history[-1]
    p99 = "" if ev.p99_ms is None else f"{ev.p99_ms:.1f}"
    log.info(
        "event=canary_%s service=%s step=%d weight=%g state=%s requests=%d errors=%d "
        "error_rate=%.4f p99_ms=%s reason=%s",
        ev.event,
        rec.service,
        ev.step,
        ev.weight,
        rec.state,
        ev.requests,
        ev.errors,
        ev.error_rate,
        p99,
        json.dumps(ev.reason),
    )


def event_payload(rec: Canary) -> bytes:
    """The ``meshd-canary`` user event's payload: the service and its last event."""
    return json.dumps({"Service": rec.service, **event_json(rec.history[-1])}).encode()
