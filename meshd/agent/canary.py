"""The canary controller: runs on the leader only and steps every running
canary (issue 19; the decisions are meshd/values/canary_core.py's).

It starts when this server becomes leader, once its state holds every entry
committed before (a ReadIndex round, Raft §6.4), and stops when leadership
is lost. All it knows lives in the replicated canary records: a new leader
continues from ``StepStartedAt`` (it waits the rest of the current
interval). Each step is one ``CanarySet`` command guarded by the record's
ModifyIndex, so a step proposed by a deposed leader and one proposed by its
successor cannot both apply.

Every step, promotion and rollback is logged (one line), fired as the user
event ``meshd-canary`` and kept in the record's History.

Times are wall seconds from ``wall_now``: the wall clock read once per trio
run and advanced by trio's clock after that (monotonic; fake under a
MockClock, so in-process tests step canaries in fake time).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from raft.errors import RaftError
from registry import queries as q
from registry.codec import to_obj
from registry.commands import CanarySet
from registry.errors import ErrorCode
from registry.records import Canary, ConfigEntry
from registry.state.watch import WatchSet

from ..errors import MeshdError
from ..values.canary_core import (
    CHECK_EVERY,
    Decision,
    StatsSource,
    apply,
    canary_json,
    decide,
    overdue_intervals,
    splitter_body,
    stats_window,
)
from ..values.canary_events import EVENT_NAME, event_payload, log_event, wall_now

if TYPE_CHECKING:
    from registry.state.store import StateStore

    from .server import MeshServer

log = logging.getLogger("meshd.canary")

FireEvent = Callable[[str, bytes], Awaitable[object]]


class CanaryController:
    """Steps the running canaries while this server leads."""

    def __init__(
        self,
        server: MeshServer,
        stats: StatsSource | None = None,
        fire: FireEvent | None = None,
        clock: Callable[[], float] = wall_now,
    ) -> None:
        self.server = server
        self.stats = stats
        self.fire = fire
        self.clock = clock
        self._held: dict[tuple[str, int, float], int] = {}
        self._tasks: trio.Nursery | None = None  # event deliveries, while leading

    async def run(self) -> None:
        """Lead the canaries during every term this server leads; until cancelled."""
        node = self.server.node
        while True:
            if not self.server.is_leader():
                await node.wait_state_change(1.0)
                continue
            async with trio.open_nursery() as nursery:
                self._tasks = nursery
                nursery.start_soon(self._lead)
                while self.server.is_leader():
                    await node.wait_state_change(1.0)
                nursery.cancel_scope.cancel()
            self._tasks = None
            log.info("event=canary_controller_stopped reason=leadership_lost")

    async def _lead(self) -> None:
        """This term's work: once the state holds every earlier commit, tend
        the running canaries whenever one is due or a record changes."""
        while True:
            try:
                await self.server.node.read_barrier()
                break
            except RaftError as exc:  # not leading after all, or lost meanwhile: retry
                log.warning("event=canary_controller_waiting reason=%s", exc)
                await trio.sleep(1.0)
        log.info("event=canary_controller_started")
        while True:
            ws = WatchSet()
            _, records = q.canary_list(self.server.store, ws)
            next_check = math.inf
            for rec in records:
                if rec.state == "running":
                    next_check = min(next_check, await self._tend_guarded(rec))
            await self._wait(ws, next_check)

    async def _tend_guarded(self, rec: Canary) -> float:
        """``tend``; an error (expected or a bug) is logged and retried
        shortly, since one canary must not stop the others or the agent."""
        try:
            return await self.tend(rec)
        except (MeshdError, RaftError, OSError) as exc:
            log.warning("event=canary_tend_failed service=%s reason=%s", rec.service, exc)
        except Exception:
            log.exception("event=canary_tend_crashed service=%s", rec.service)
        return self.clock() + CHECK_EVERY

    async def _wait(self, ws: WatchSet, until: float) -> None:
        """Until a canary record changes or the wall clock reaches ``until``."""
        changed = trio.Event()
        ws.register(changed.set)
        try:
            with trio.move_on_after(max(0.0, min(until - self.clock(), 60.0))):
                await changed.wait()
        finally:
            ws.unregister()

    async def tend(self, rec: Canary) -> float:
        """Look at one running canary now; act on it. Returns when to look again."""
        now = self.clock()
        if self.stats is None:
            log.warning("event=canary_no_stats service=%s", rec.service)
            return now + CHECK_EVERY * 5
        window = stats_window(rec, now)
        stats = await self.stats.subset_stats(rec.service, rec.to_subset, window)
        now = self.clock()
        decision = decide(rec, stats, now)
        if decision.kind in ("none", "wait"):
            return decision.next_check
        if decision.kind == "hold":
            self._log_hold(rec, decision, overdue_intervals(rec, now))
            return decision.next_check
        new = apply(rec, decision.kind, decision.reason, now, stats)
        await self.commit(rec, new)
        return now

    def _log_hold(self, rec: Canary, decision: Decision, overdue: int) -> None:
        """Log a held step once per interval it is held."""
        key = (rec.service, rec.step, rec.step_started_at)
        if self._held.get(key) == overdue:
            return
        if len(self._held) > 1000:
            self._held.clear()
        self._held[key] = overdue
        log.info(
            "event=canary_hold service=%s step=%d reason=%s",
            rec.service,
            rec.step,
            json.dumps(decision.reason),
        )

    async def commit(self, old: Canary, new: Canary) -> bool:
        """Write ``new`` (and its splitter) if ``old`` is still the stored
        record; log and fire the event. False if another write came first."""
        ok = await write_canary(self.server.write, self.server.store, new, cas=old.modify_index)
        if ok:
            log_event(new)
            if self.fire is not None and self._tasks is not None:
                # Delivered aside: a server that does not answer must not stall the steps.
                self._tasks.start_soon(self.fire, EVENT_NAME, event_payload(new))
        return ok


async def write_canary(
    write: Callable[[CanarySet], Awaitable[object]], store: StateStore, rec: Canary, *, cas: int
) -> bool:
    """One ``CanarySet`` of ``rec`` and the splitter it implies (built on the
    stored splitter, keeping its other fields). False on a CAS conflict;
    raises ``MeshdError`` if the write is refused otherwise."""
    _, entry = q.config_entry_get(store, None, "service-splitter", rec.service)
    body = splitter_body(rec, entry.body if entry is not None else None)
    splitter = ConfigEntry("service-splitter", rec.service, body)
    now = rec.history[-1].time if rec.history else 0.0
    result = await write(CanarySet(canary=rec, splitter=splitter, cas=cas, now=now))
    if getattr(result, "ok", False):
        return True
    if getattr(result, "error", None) == ErrorCode.CAS_CONFLICT:
        log.info("event=canary_write_lost service=%s cas=%d", rec.service, cas)
        return False
    raise MeshdError(f"canary write refused: {getattr(result, 'message', result)}")


def _get(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, Any]:
    idx, rec = q.canary_get(store, ws, str(a.get("service") or ""))
    return idx, None if rec is None else canary_json(rec)


def _list(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, Any]:
    idx, recs = q.canary_list(store, ws)
    return idx, [canary_json(r) for r in recs]


def _record(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, Any]:
    """The record itself in wire form (``codec.to_obj``), for the API's writes."""
    idx, rec = q.canary_get(store, ws, str(a.get("service") or ""))
    return idx, None if rec is None else to_obj(rec, Canary)


# Entries for ``meshd.agent.reads.READS``.
CANARY_READS = {"canary.get": _get, "canary.list": _list, "canary.record": _record}

__all__ = ["CANARY_READS", "EVENT_NAME", "CanaryController", "canary_json", "wall_now"]
