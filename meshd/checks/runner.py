"""Runs the agent's checks: one long-lived task per check, reconciled with local state.

``CheckRunner.run`` watches ``LocalState``: each time it changes, checks
that appeared are started, checks whose definition changed are restarted
(thresholds and timers start afresh), removed ones are stopped, and the rest
are left running untouched, so ``meshd reload`` and API re-registrations do
not reset them. A status or output update is not a definition change.

Periodic kinds (http, tcp, udp, script, grpc, h2ping) wait a random
fraction of their interval first (Consul's ``RandomStagger``) so that many
checks on one host do not fire together, then probe every ``Interval``
(rounded up to a 100 ms ``timer_slack`` grid so that probes due together
share one wake-up of the process), each probe bounded by its ``Timeout`` in
its own cancel scope: a hung probe only delays its own check. Results pass through the check's
``StatusHandler`` (thresholds) before reaching the local state. TTL checks
wait for ``ttl_update`` (the agent API) and expire to critical; alias checks
follow an ``AliasSource``. Maintenance checks have no task.

``DeregisterCriticalServiceAfter``: every ``reap_interval`` the runner looks
for service checks critical for longer than that (at least
``deregister_min``, 1 minute in Consul) and calls ``on_deregister(service_id)``.
"""

from __future__ import annotations

import collections
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from registry.errors import NotFoundError, ValidationError

from ..agent.local import LocalState
from ..defs.definitions import CheckDefinition
from ..durations import format_duration
from . import alias as alias_mod
from .base import (
    CRITICAL,
    DEFAULT_TIMEOUT,
    MIN_INTERVAL,
    PASSING,
    WARNING,
    Checker,
    CheckOptions,
    CheckResult,
    StatusHandler,
    cap_output,
)
from .errors import NotATTLCheck
from .grpc import GRPCChecker
from .h2ping import H2PingChecker
from .http import HTTPChecker
from .script import DEFAULT_SCRIPT_TIMEOUT, ScriptChecker, check_allowed
from .tcp import TCPChecker
from .ttl import TTLTimer
from .udp import UDPChecker

__all__ = ["DEFAULT_FACTORIES", "CheckRunner", "CheckerFactory"]

log = logging.getLogger("meshd.checks")

CheckerFactory = Callable[[dict[str, Any], CheckOptions], Checker]
ResultHook = Callable[[str, str, float], None]
DeregisterHook = Callable[[str], Awaitable[None]]

DEFAULT_FACTORIES: Mapping[str, CheckerFactory] = {
    "http": HTTPChecker,
    "tcp": TCPChecker,
    "udp": UDPChecker,
    "script": ScriptChecker,
    "grpc": GRPCChecker,
    "h2ping": H2PingChecker,
}
_DEFAULT_TIMEOUTS = {"script": DEFAULT_SCRIPT_TIMEOUT}
# Consul's CheckReapInterval and CheckDeregisterIntervalMin.
REAP_INTERVAL = 30.0
DEREGISTER_MIN = 60.0
# Probes due within the same 100 ms window run together (see _sleep_until).
TIMER_SLACK = 0.1
# Fields that change what a check shows but not how it runs.
_COSMETIC = frozenset(("Status", "Notes", "Name"))
_TTL_STATUSES = (PASSING, WARNING, CRITICAL)


def _same_definition(a: CheckDefinition, b: CheckDefinition) -> bool:
    """Whether a running check for ``a`` can keep running for ``b``."""
    if a.kind != b.kind or a.check.service_id != b.check.service_id:
        return False
    if a.spec is b.spec:  # status updates copy the definition, not the spec
        return True
    return _runtime_fields(a.spec) == _runtime_fields(b.spec)


def _runtime_fields(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _COSMETIC}


@dataclass(eq=False)
class _Task:
    """A started check: its definition, its task's cancel scope, its kind's state."""

    defn: CheckDefinition
    scope: trio.CancelScope | None = None
    options: CheckOptions = field(default_factory=CheckOptions)
    ttl: TTLTimer | None = None


class CheckRunner:
    """Runs the checks of ``local``; start with ``await nursery.start(runner.run)``.

    ``rng`` spreads first runs; ``clock`` (seconds, monotonic, advancing with
    trio's clock) times durations, TTLs and critical periods. Optional hooks:
    ``on_result(kind, status, seconds)`` after every probe (metrics),
    ``on_deregister(service_id)`` to remove a service critical for too long
    (default: remove it from ``local``), ``alias_source`` for alias checks on
    other nodes. ``factories`` replaces the probe of a kind (tests).
    ``starts[check_id]`` counts how often each check's task was started.
    """

    def __init__(
        self,
        local: LocalState,
        *,
        enable_script_checks: bool = False,
        enable_local_script_checks: bool = False,
        rng: random.Random | None = None,
        alias_source: alias_mod.AliasSource | None = None,
        clock: Callable[[], float] = trio.current_time,
        on_result: ResultHook | None = None,
        on_deregister: DeregisterHook | None = None,
        factories: Mapping[str, CheckerFactory] | None = None,
        min_interval: float = MIN_INTERVAL,
        reap_interval: float = REAP_INTERVAL,
        deregister_min: float = DEREGISTER_MIN,
        timer_slack: float = TIMER_SLACK,
    ) -> None:
        self.local = local
        self.enable_script_checks = enable_script_checks
        self.enable_local_script_checks = enable_local_script_checks
        self.rng = rng or random.Random()
        self.alias_source = alias_source
        self.local_alias_source = alias_mod.LocalAliasSource(local)
        self.clock = clock
        self.on_result = on_result
        self.on_deregister = on_deregister
        self.factories = dict(DEFAULT_FACTORIES if factories is None else factories)
        self.min_interval = min_interval
        self.reap_interval = reap_interval
        self.deregister_min = deregister_min
        self.timer_slack = timer_slack
        self.starts: collections.Counter[str] = collections.Counter()
        self._tasks: dict[str, _Task] = {}
        self._critical_since: dict[str, float] = {}
        self._nursery: trio.Nursery | None = None
        # The local state's version as of the last reconcile, advanced past
        # the runner's own status writes so that they do not cost an O(n)
        # reconcile each: only other writers' changes (API, reload) need one.
        self._seen_version = -1

    # ------------------------------------------------------------ public

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every check until cancelled; ``started()`` once the current
        checks are scheduled. Cancellation stops all check tasks (scripts'
        process groups are killed)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                self.reconcile()
                nursery.start_soon(self._reap_loop)
                task_status.started()
                while True:
                    await self.local.wait_changed()
                    if self.local.version != self._seen_version:
                        self.reconcile()
            finally:
                self._nursery = None
                self._tasks.clear()

    def check_allowed(self, defn: CheckDefinition, *, remote: bool) -> None:
        """Refuse a script check this agent may not run (call before registering).

        ``remote`` is True for the HTTP API. Raises ``ScriptChecksDisabled``.
        """
        if defn.kind == "script":
            check_allowed(
                remote=remote,
                enable_script_checks=self.enable_script_checks,
                enable_local=self.enable_local_script_checks,
            )

    def ttl_update(self, check_id: str, status: str, output: str) -> bool:
        """Record a TTL check's status (agent API pass/warn/fail/update) and restart its TTL.

        Returns whether the status or output changed. Raises ``NotATTLCheck``
        (a ``NotFoundError``, HTTP 404) for an unknown or non-TTL check and
        ``ValidationError`` for a status other than passing/warning/critical.
        """
        defn = self.local.checks.get(check_id)
        if defn is None:
            raise NotATTLCheck(check_id, unknown=True)
        if defn.kind != "ttl":
            raise NotATTLCheck(check_id)
        if status not in _TTL_STATUSES:
            raise ValidationError("Status", f"must be one of {', '.join(_TTL_STATUSES)}")
        task = self._tasks.get(check_id)
        if (task is None or task.defn.spec is not defn.spec) and self._nursery is not None:
            self.reconcile()  # registered a moment ago: start its timer now
            task = self._tasks.get(check_id)
        limit = task.options.output_max_size if task else None
        output = cap_output(output, limit) if limit else cap_output(output)
        if task is not None and task.ttl is not None:
            task.ttl.reset(output)
        self._report("ttl", status, 0.0)
        return self._record(check_id, status, output)

    def reconcile(self) -> None:
        """Start, restart and stop check tasks to match ``local.checks`` now."""
        checks = self.local.checks
        self._seen_version = self.local.version
        for check_id in [c for c in self._tasks if c not in checks]:
            self._stop(check_id)
        for check_id, defn in checks.items():
            task = self._tasks.get(check_id)
            if task is not None:
                if task.defn is defn or _same_definition(task.defn, defn):
                    task.defn = defn
                    continue
                self._stop(check_id)
            self._start(check_id, defn)

    async def reap(self) -> list[str]:
        """Deregister services whose check has been critical for longer than its
        ``DeregisterCriticalServiceAfter``; returns their IDs."""
        now = self.clock()
        doomed: list[str] = []
        for check_id, task in self._tasks.items():
            after, service_id = task.options.deregister_after, task.defn.check.service_id
            if not after or not service_id:
                continue
            current = self.local.checks.get(check_id)
            if current is None or current.check.status != CRITICAL:
                self._critical_since.pop(check_id, None)
                continue
            since = self._critical_since.setdefault(check_id, now)
            if now - since > max(after, self.deregister_min) and service_id not in doomed:
                doomed.append(service_id)
                log.info(
                    "event=check_deregister_critical check=%s service=%s critical_for=%s",
                    check_id,
                    service_id,
                    format_duration(now - since),
                )
        for service_id in doomed:
            await self._deregister(service_id)
        return doomed

    # ------------------------------------------------------------ tasks

    def _start(self, check_id: str, defn: CheckDefinition) -> None:
        task = _Task(defn)
        self._tasks[check_id] = task
        if defn.check.status == CRITICAL:
            self._critical_since.setdefault(check_id, self.clock())
        try:
            runner = self._prepare(check_id, task)
        except Exception as exc:  # a bad definition must not stop the other checks
            log.warning("event=check_invalid check=%s kind=%s reason=%s", check_id, defn.kind, exc)
            self._record(check_id, CRITICAL, str(exc))
            return
        if runner is None:
            return  # nothing to run (maintenance)
        assert self._nursery is not None, "reconcile() runs inside run()"
        task.scope = trio.CancelScope()
        self.starts[check_id] += 1
        self._nursery.start_soon(self._guard, task.scope, runner)

    def _prepare(self, check_id: str, task: _Task) -> Callable[[], Awaitable[None]] | None:
        """Build what the task will run; raises ``ValueError`` for a bad definition."""
        defn = task.defn
        timeout = _DEFAULT_TIMEOUTS.get(defn.kind, DEFAULT_TIMEOUT)
        task.options = options = CheckOptions.from_spec(
            defn.spec, default_timeout=timeout, min_interval=self.min_interval
        )
        if defn.kind == "ttl":
            timer = task.ttl = TTLTimer(options.ttl, clock=self.clock)
            return lambda: self._ttl(check_id, timer, options)
        if defn.kind == "alias":
            return lambda: self._alias(check_id, alias_mod.AliasTarget.from_spec(defn.spec))
        factory = self.factories.get(defn.kind)
        if factory is None:
            if defn.kind != "maintenance":
                log.warning("event=check_unsupported check=%s kind=%s", check_id, defn.kind)
            return None
        if defn.kind == "script":
            self.check_allowed(defn, remote=self._registered_remotely(check_id, defn))
        if options.interval <= 0:
            raise ValueError(f"Interval required for a {defn.kind} check")
        checker = factory(defn.spec, options)
        return lambda: self._periodic(check_id, defn.kind, checker, options)

    def _registered_remotely(self, check_id: str, defn: CheckDefinition) -> bool:
        # LocalState persists what came through the API, never configuration files.
        persisted = self.local.persisted_ids
        service_id = defn.check.service_id
        return f"check:{check_id}" in persisted or bool(service_id and service_id in persisted)

    def _stop(self, check_id: str) -> None:
        task = self._tasks.pop(check_id)
        self._critical_since.pop(check_id, None)
        if task.scope is not None:
            task.scope.cancel()

    async def _guard(self, scope: trio.CancelScope, body: Callable[[], Awaitable[None]]) -> None:
        with scope:
            await body()

    async def _periodic(
        self, check_id: str, kind: str, checker: Checker, options: CheckOptions
    ) -> None:
        handler = StatusHandler.from_options(options)
        interval = options.interval
        next_at = self.clock() + self.rng.uniform(0, interval)  # jittered first run
        while True:
            await self._sleep_until(next_at)
            result = await self._probe(check_id, kind, checker, options.timeout)
            update = handler.observe(result)
            if update is not None:
                self._record(check_id, update.status, update.output, options.output_max_size)
            next_at += interval
            now = self.clock()
            if next_at < now:  # overran its interval: skip the missed runs, keep the phase
                next_at += math.ceil((now - next_at) / interval) * interval

    async def _sleep_until(self, when: float) -> None:
        """Sleep until ``when``, rounded up to the timer-slack grid.

        Waking the process costs far more than the work of one probe, so
        probes due within the same slack window share one wake-up, as Linux
        timer slack coalesces timers. Jitter still spreads checks over
        ``interval / timer_slack`` slots.
        """
        if self.timer_slack:
            when = math.ceil(when / self.timer_slack) * self.timer_slack
        await trio.sleep(max(0.0, when - self.clock()))

    async def _probe(
        self, check_id: str, kind: str, checker: Checker, timeout: float
    ) -> CheckResult:
        """Run one probe within ``timeout``; never raises except ``Cancelled``."""
        started = self.clock()
        result: CheckResult | None = None
        try:
            with trio.move_on_after(timeout):
                result = await checker.run()
        except Exception as exc:  # a broken probe must not take the agent down
            log.exception("event=check_error check=%s kind=%s", check_id, kind)
            result = CheckResult(CRITICAL, f"check error: {exc}")
        if result is None:
            result = checker.timed_out(timeout)
        self._report(kind, result.status, self.clock() - started)
        return result

    def _report(self, kind: str, status: str, seconds: float) -> None:
        """Tell the metrics hook about one result; its failure is logged, not raised."""
        if self.on_result is not None:
            try:
                self.on_result(kind, status, seconds)
            except Exception:
                log.exception("event=check_result_hook_error kind=%s", kind)

    async def _ttl(self, check_id: str, timer: TTLTimer, options: CheckOptions) -> None:
        def expire(output: str) -> None:
            self._record(check_id, CRITICAL, output, options.output_max_size)
            self._report("ttl", CRITICAL, 0.0)

        await timer.run(expire)

    async def _alias(self, check_id: str, target: alias_mod.AliasTarget) -> None:
        source: alias_mod.AliasSource | None = self.alias_source
        if target.node in ("", self.local.node):
            source = self.local_alias_source
        if source is None:
            self._record(check_id, CRITICAL, f"no alias source for node {target.node}")
            return
        backoff = 1.0
        while True:
            watch = source.watch(target)
            try:
                async for snapshot in watch:
                    backoff = 1.0
                    result = alias_mod.aggregate(target, snapshot, exclude=check_id)
                    self._report("alias", result.status, 0.0)
                    self._record(check_id, result.status, result.output)
            except Exception as exc:  # the source's failure leaves the status as it was
                log.warning("event=alias_watch_failed check=%s reason=%s", check_id, exc)
            finally:
                await _aclose(watch)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _reap_loop(self) -> None:
        while True:
            await trio.sleep(self.reap_interval)
            await self.reap()

    async def _deregister(self, service_id: str) -> None:
        try:
            if self.on_deregister is not None:
                await self.on_deregister(service_id)
            else:
                self.local.remove_service(service_id)
        except NotFoundError:
            pass  # already gone
        except Exception:
            log.exception("event=check_deregister_failed service=%s", service_id)

    # ------------------------------------------------------------ state

    def _record(self, check_id: str, status: str, output: str, limit: int = 0) -> bool:
        """Write a status to the local state (output capped); False if unchanged or gone."""
        output = cap_output(output, limit) if limit else cap_output(output)
        current = self.local.checks.get(check_id)
        if current is None:
            return False
        version = self.local.version
        changed = self.local.update_check(check_id, status, output)
        if version == self._seen_version:
            self._seen_version = self.local.version  # only our own write since
        if status == CRITICAL:
            self._critical_since.setdefault(check_id, self.clock())
        else:
            self._critical_since.pop(check_id, None)
        if changed and current.check.status != status:
            log.info(
                "event=check_status check=%s from=%s to=%s",
                check_id,
                current.check.status,
                status,
            )
        return changed


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with trio.CancelScope(shield=True):
            await aclose()
