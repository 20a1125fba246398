"""A scripted probe for runner tests under the autojump clock (no I/O)."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import trio

from meshd.agent.local import LocalState
from meshd.checks.base import CRITICAL, PASSING, CheckOptions, CheckResult
from meshd.defs.definitions import parse_check, parse_service

NODE = "n1"


@dataclass
class Probes:
    """Factory of fake checkers: ``times[id]`` holds when each probe of check
    ``id`` ran; ``results[id]`` the results to return, in order (then passing);
    ``hang`` the IDs whose probes never return."""

    times: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    results: dict[str, list[CheckResult]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    hang: set[str] = field(default_factory=set)
    built: collections.Counter[str] = field(default_factory=collections.Counter)

    def __call__(self, spec: dict[str, Any], options: CheckOptions) -> FakeChecker:
        self.built[spec["ID"]] += 1
        return FakeChecker(self, spec["ID"])


@dataclass
class FakeChecker:
    probes: Probes
    check_id: str

    async def run(self) -> CheckResult:
        self.probes.times[self.check_id].append(trio.current_time())
        if self.check_id in self.probes.hang:
            await trio.sleep_forever()
        queue = self.probes.results[self.check_id]
        await trio.sleep(0)
        return queue.pop(0) if queue else CheckResult(PASSING, "fine")

    def timed_out(self, timeout: float) -> CheckResult:
        return CheckResult(CRITICAL, f"timed out after {timeout}")


def add_check(local: LocalState, **spec: Any) -> None:
    local.add_check(parse_check(spec, node=NODE), persist=False)


def add_service(local: LocalState, *, persist: bool = False, **spec: Any) -> None:
    local.add_service(parse_service(spec, node=NODE), persist=persist)


def status(local: LocalState, check_id: str) -> tuple[str, str]:
    check = local.checks[check_id].check
    return check.status, check.output
