"""1,000 HTTP checks at once: every one probes its own URL and passes.

What they cost (the budget: < 10% of a core at a 10 s interval) is
bench/checks_bench.py's figure; this test does not time anything. The HTTP
server runs in a child process (bench.checks_bench.start_server).
"""

from __future__ import annotations

import random

import pytest
import trio

from bench.checks_bench import CHECKS, http_checks, start_server
from meshd.agent.local import LocalState
from meshd.checks.base import PASSING
from meshd.checks.runner import CheckRunner

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _probed(local: LocalState, i: int) -> bool:
    check = local.checks[f"web-{i}"].check
    return check.status == PASSING and f"/health/{i}" in check.output


async def test_1000_http_checks_each_probe_and_pass() -> None:
    proc, port = start_server()
    try:
        local = http_checks(port)  # 10 s: first probes staggered over it
        kinds: list[str] = []
        runner = CheckRunner(local, rng=random.Random(1), on_result=lambda k, s, d: kinds.append(k))
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            with trio.fail_after(60):  # a generous bound for a loaded machine
                while not all(_probed(local, i) for i in range(CHECKS)):
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    finally:
        proc.kill()
        proc.wait()
    assert len(kinds) >= CHECKS and set(kinds) == {"http"}
