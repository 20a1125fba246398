"""CheckRunner: scheduling, jitter, reconciliation, thresholds, TTL, deregistration.

These run under the autojump clock with scripted probes (see fakes.py), so
intervals of seconds take no real time; test_runner_e2e.py drives real
servers.
"""

from __future__ import annotations

import collections
import itertools
import random
import statistics

import pytest
import trio

from meshd.agent.local import LocalState
from meshd.checks.base import CRITICAL, PASSING, WARNING, CheckResult
from meshd.checks.errors import NotATTLCheck
from meshd.checks.maintenance import enable_node_maintenance
from meshd.checks.runner import CheckRunner
from registry.errors import ValidationError

from .fakes import NODE, Probes, add_check, add_service, status


def make_runner(local: LocalState, probes: Probes, **kw: object) -> CheckRunner:
    return CheckRunner(
        local,
        rng=random.Random(7),
        factories={"http": probes, "tcp": probes, "script": probes},
        **kw,  # type: ignore[arg-type]
    )


async def first_runs(slack: float) -> list[float]:
    """When each of 1,000 checks (10 s interval) first ran, from the runner's start."""
    local, probes = LocalState(NODE, None), Probes()
    for i in range(1000):
        add_check(local, ID=f"c{i}", HTTP="http://127.0.0.1:1/", Interval="10s")
    runner = make_runner(local, probes, timer_slack=slack)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(runner.run)
        await trio.sleep(10.5)
        nursery.cancel_scope.cancel()
    assert len(probes.times) == 1000
    return sorted(t[0] - start for t in probes.times.values())


def assert_uniform(firsts: list[float]) -> None:
    buckets = [0] * 10
    for t in firsts:
        buckets[min(int(t), 9)] += 1
    assert all(70 <= b <= 130 for b in buckets), buckets  # 100 per second, within 3 sigma
    assert abs(statistics.mean(firsts) - 5.0) < 0.3


async def test_jitter_spreads_the_first_runs_of_1000_checks(autojump_clock: trio.abc.Clock) -> None:
    firsts = await first_runs(slack=0.0)
    assert firsts[0] >= 0 and firsts[-1] < 10
    assert_uniform(firsts)
    at_once = collections.Counter(round(t, 3) for t in firsts)
    assert max(at_once.values()) <= 3  # never more than a few in the same millisecond


async def test_timer_slack_groups_first_runs_into_100ms_slots(
    autojump_clock: trio.abc.Clock,
) -> None:
    firsts = await first_runs(slack=0.1)
    assert firsts[0] > 0 and firsts[-1] <= 10.0 + 1e-9
    assert_uniform(firsts)
    slots = collections.Counter(round(t, 6) for t in firsts)
    assert all(abs(t * 10 - round(t * 10)) < 1e-6 for t in slots)  # on the 100 ms grid
    assert len(slots) >= 95 and max(slots.values()) <= 25  # ~10 per slot of 100


async def test_probes_repeat_every_interval_after_the_first(
    autojump_clock: trio.abc.Clock,
) -> None:
    local, probes = LocalState(NODE, None), Probes()
    add_check(local, ID="web", HTTP="http://127.0.0.1:1/", Interval="5s")
    async with trio.open_nursery() as nursery:
        await nursery.start(make_runner(local, probes).run)
        await trio.sleep(31)
        nursery.cancel_scope.cancel()
    times = probes.times["web"]
    assert len(times) == 6 and times[0] < 5
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [5.0] * 5


async def test_a_hung_probe_is_cut_at_its_timeout_while_others_keep_their_schedule(
    autojump_clock: trio.abc.Clock,
) -> None:
    local, probes = LocalState(NODE, None), Probes(hang={"slow"})
    add_check(local, ID="slow", HTTP="http://127.0.0.1:1/", Interval="10s", Timeout="3s")
    add_check(local, ID="fast", TCP="127.0.0.1:1", Interval="1s")
    async with trio.open_nursery() as nursery:
        await nursery.start(make_runner(local, probes).run)
        await trio.sleep(25)
        nursery.cancel_scope.cancel()
    fast = probes.times["fast"]
    assert len(fast) >= 24
    assert all(round(b - a, 6) == 1.0 for a, b in itertools.pairwise(fast))
    assert status(local, "slow") == (CRITICAL, "timed out after 3.0")
    assert len(probes.times["slow"]) in (2, 3)  # every 10 s despite hanging each time


async def test_reconcile_starts_restarts_and_stops_only_what_changed(
    autojump_clock: trio.abc.Clock,
) -> None:
    local, probes = LocalState(NODE, None), Probes()
    add_check(local, ID="a", HTTP="http://127.0.0.1:1/a", Interval="1s")
    add_check(local, ID="b", HTTP="http://127.0.0.1:1/b", Interval="1s")
    add_check(local, ID="c", TCP="127.0.0.1:1", Interval="1s")
    runner = make_runner(local, probes)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await trio.sleep(3)
        assert runner.starts == {"a": 1, "b": 1, "c": 1}
        # a: re-registered identically except for notes/name (a reload) -> untouched
        add_check(
            local, ID="a", Name="renamed", Notes="hi", HTTP="http://127.0.0.1:1/a", Interval="1s"
        )
        # b: its interval changes -> restarted
        add_check(local, ID="b", HTTP="http://127.0.0.1:1/b", Interval="2s")
        # c: removed -> stopped
        local.remove_check("c")
        # d: new -> started
        add_check(local, ID="d", TCP="127.0.0.1:1", Interval="1s")
        # a status update is not a definition change
        local.update_check("a", WARNING, "manual")
        await trio.sleep(0)
        c_runs = len(probes.times["c"])
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert runner.starts == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert probes.built == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert len(probes.times["c"]) == c_runs  # stopped: no probe since
    assert local.checks["a"].check.name == "renamed"


async def test_thresholds_hold_the_status_until_consecutive_failures(
    autojump_clock: trio.abc.Clock,
) -> None:
    local, probes = LocalState(NODE, None), Probes()
    bad, ok = CheckResult(CRITICAL, "down"), CheckResult(PASSING, "up")
    probes.results["web"] = [ok, bad, bad, ok, bad, bad, bad, ok, ok]
    add_check(
        local,
        ID="web",
        HTTP="http://127.0.0.1:1/",
        Interval="10s",
        FailuresBeforeWarning=2,
        FailuresBeforeCritical=3,
        SuccessBeforePassing=2,
        Status="passing",
    )
    seen = []
    async with trio.open_nursery() as nursery:
        await nursery.start(CheckRunner(local, rng=NoJitter(), factories={"http": probes}).run)
        await trio.sleep(5)  # probes at 0, 10, 20, ...: observe between them
        for _ in range(9):
            seen.append(status(local, "web")[0])
            await trio.sleep(10)
        nursery.cancel_scope.cancel()
    # ok (1 success < 2: stays passing as registered); bad, bad: warning at the 2nd;
    # ok (1 success: nothing applied, stays warning); bad (1 failure: nothing), bad
    # (warning), bad (critical); ok (nothing), ok (passing).
    assert seen == [
        PASSING,
        PASSING,
        WARNING,
        WARNING,
        WARNING,
        WARNING,
        CRITICAL,
        CRITICAL,
        PASSING,
    ]


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


async def test_ttl_check_expires_to_critical_and_api_updates_reset_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    local = LocalState(NODE, None)
    add_check(local, ID="app", TTL="10s")
    runner = CheckRunner(local, rng=random.Random(1))
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        assert status(local, "app")[0] == CRITICAL  # Consul's initial status
        assert runner.ttl_update("app", PASSING, "all good") is True
        await trio.sleep(9)
        assert status(local, "app") == (PASSING, "all good")
        runner.ttl_update("app", WARNING, "degraded")
        await trio.sleep(9)  # 18 s after the first update, 9 s after the second
        assert status(local, "app") == (WARNING, "degraded")
        await trio.sleep(2)
        assert status(local, "app") == (
            CRITICAL,
            "TTL expired (last output before timeout follows): degraded",
        )
        runner.ttl_update("app", PASSING, "")
        await trio.sleep(11)
        assert status(local, "app") == (CRITICAL, "TTL expired")
        nursery.cancel_scope.cancel()


async def test_ttl_update_errors(autojump_clock: trio.abc.Clock) -> None:
    local = LocalState(NODE, None)
    add_check(local, ID="web", TCP="127.0.0.1:1", Interval="10s")
    add_check(local, ID="app", TTL="10s")
    runner = CheckRunner(local, factories={})
    with pytest.raises(NotATTLCheck, match='Unknown check ID "nope"'):
        runner.ttl_update("nope", PASSING, "")
    with pytest.raises(NotATTLCheck, match='CheckID "web" does not have associated TTL'):
        runner.ttl_update("web", PASSING, "")
    with pytest.raises(ValidationError, match="Status"):
        runner.ttl_update("app", "maintenance", "")


async def test_ttl_output_is_capped_at_4_kib(autojump_clock: trio.abc.Clock) -> None:
    local = LocalState(NODE, None)
    add_check(local, ID="app", TTL="10s")
    runner = CheckRunner(local)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        runner.ttl_update("app", PASSING, "y" * 10_000)
        assert status(local, "app") == (PASSING, "y" * 4096)
        nursery.cancel_scope.cancel()


async def test_a_ttl_registered_after_start_is_timed_from_its_registration(
    autojump_clock: trio.abc.Clock,
) -> None:
    local = LocalState(NODE, None)
    runner = CheckRunner(local)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await trio.sleep(100)
        add_check(local, ID="late", TTL="5s", Status="passing")
        runner.ttl_update("late", PASSING, "hello")  # before the runner woke up
        await trio.sleep(4)
        assert status(local, "late") == (PASSING, "hello")
        await trio.sleep(2)
        assert status(local, "late")[0] == CRITICAL
        nursery.cancel_scope.cancel()


async def test_deregister_critical_service_after_calls_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    local = LocalState(NODE, None)
    add_service(
        local,
        Name="web",
        Check={"TTL": "10s", "DeregisterCriticalServiceAfter": "90s", "Status": "passing"},
    )
    add_service(local, Name="db", Check={"TTL": "10s", "Status": "passing"})
    removed: list[tuple[str, float]] = []

    async def on_deregister(service_id: str) -> None:
        removed.append((service_id, trio.current_time() - start))
        local.remove_service(service_id)

    runner = CheckRunner(local, on_deregister=on_deregister, reap_interval=1.0)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(runner.run)
        await trio.sleep(300)
        nursery.cancel_scope.cancel()
    # the TTL expires at 10 s; critical for more than 90 s -> removed at the next reap
    assert [sid for sid, _ in removed] == ["web"]
    assert 100 < removed[0][1] <= 102
    assert "web" not in local.services and "db" in local.services


async def test_a_service_that_recovers_in_time_is_kept(autojump_clock: trio.abc.Clock) -> None:
    local = LocalState(NODE, None)
    add_service(local, Name="web", Check={"TTL": "10s", "DeregisterCriticalServiceAfter": "1m"})
    runner = CheckRunner(local, reap_interval=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        for _ in range(10):  # critical 50 s at a time, then passing once
            await trio.sleep(50)
            runner.ttl_update("service:web", PASSING, "")
            await trio.sleep(0)
            local.update_check("service:web", CRITICAL, "")
        nursery.cancel_scope.cancel()
    assert "web" in local.services


async def test_script_checks_are_not_run_when_disabled(autojump_clock: trio.abc.Clock) -> None:
    local, probes = LocalState(NODE, None), Probes()
    add_check(local, ID="s", Args=["true"], Interval="1s", Status="passing")
    async with trio.open_nursery() as nursery:
        await nursery.start(make_runner(local, probes).run)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert probes.times["s"] == []
    assert status(local, "s") == (
        CRITICAL,
        "Scripts are disabled on this agent; to enable, configure "
        "'enable_script_checks' or 'enable_local_script_checks' to true",
    )


async def test_local_script_checks_run_but_api_ones_do_not(autojump_clock: trio.abc.Clock) -> None:
    local, probes = LocalState(NODE, None), Probes()
    add_check(local, ID="from-config", Args=["true"], Interval="1s")
    add_service(
        local,
        persist=True,
        Name="api",
        Check={"ID": "from-api", "Args": ["true"], "Interval": "1s"},
    )
    runner = make_runner(local, probes, enable_local_script_checks=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert probes.times["from-config"] and not probes.times["from-api"]
    assert "from remote calls" in status(local, "from-api")[1]


async def test_on_result_reports_kind_status_and_duration(autojump_clock: trio.abc.Clock) -> None:
    local, probes = LocalState(NODE, None), Probes()
    probes.results["w"] = [CheckResult(WARNING, "")]
    add_check(local, ID="w", HTTP="http://127.0.0.1:1/", Interval="10s")
    add_check(local, ID="t", TCP="127.0.0.1:1", Interval="10s")
    seen: list[tuple[str, str, float]] = []
    runner = make_runner(local, probes, on_result=lambda *a: seen.append(a))
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await trio.sleep(15)
        nursery.cancel_scope.cancel()
    assert sorted((k, s) for k, s, _ in seen) == [
        ("http", PASSING),
        ("http", WARNING),
        ("tcp", PASSING),
        ("tcp", PASSING),
    ]
    assert all(d >= 0 for _, _, d in seen)


async def test_maintenance_checks_have_no_task(autojump_clock: trio.abc.Clock) -> None:
    local = LocalState(NODE, None)
    runner = CheckRunner(local)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        enable_node_maintenance(local, "patching")
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert status(local, "_node_maintenance")[0] == CRITICAL
    assert runner.starts == {}


async def test_an_invalid_definition_is_critical_not_fatal(autojump_clock: trio.abc.Clock) -> None:
    local = LocalState(NODE, None)
    add_check(local, ID="bad", TCP="no-port-here", Interval="10s")
    async with trio.open_nursery() as nursery:
        await nursery.start(CheckRunner(local).run)
        nursery.cancel_scope.cancel()
    assert status(local, "bad") == (CRITICAL, "address no-port-here: missing port in address")


async def test_an_overrunning_probe_skips_missed_runs_and_keeps_its_phase(
    autojump_clock: trio.abc.Clock,
) -> None:
    local, probes = LocalState(NODE, None), Probes(hang={"slow"})
    add_check(local, ID="slow", HTTP="http://127.0.0.1:1/", Interval="1s", Timeout="2500ms")
    async with trio.open_nursery() as nursery:
        await nursery.start(make_runner(local, probes).run)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    times = probes.times["slow"]
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [3.0] * (len(times) - 1)


async def test_every_check_of_a_service_definition_runs(autojump_clock: trio.abc.Clock) -> None:
    local, probes = LocalState(NODE, None), Probes()
    add_service(
        local,
        Name="web",
        Check={"ID": "web-http", "HTTP": "http://127.0.0.1:1/", "Interval": "10s"},
        Checks=[
            {"ID": "web-tcp", "TCP": "127.0.0.1:1", "Interval": "10s"},
            {"ID": "web-ttl", "TTL": "30s"},
        ],
    )
    runner = make_runner(local, probes)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await trio.sleep(11)
        nursery.cancel_scope.cancel()
    assert runner.starts == {"web-http": 1, "web-tcp": 1, "web-ttl": 1}
    assert status(local, "web-http")[0] == status(local, "web-tcp")[0] == PASSING


async def test_a_header_http_refuses_is_critical_not_fatal(autojump_clock: trio.abc.Clock) -> None:
    local = LocalState(NODE, None)
    add_check(local, ID="h", HTTP="http://127.0.0.1:1/", Interval="10s", Header={"Bad Name": ["x"]})
    add_check(local, ID="ok", TTL="10s")
    async with trio.open_nursery() as nursery:
        await nursery.start(CheckRunner(local).run)
        nursery.cancel_scope.cancel()
    st, output = status(local, "h")
    assert st == CRITICAL and output.startswith("invalid request:")
