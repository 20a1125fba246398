"""Alias checks (pure aggregation and live mirroring) and maintenance mode."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import trio

from meshd.agent.local import LocalState
from meshd.checks.alias import AliasSnapshot, AliasTarget, aggregate
from meshd.checks.base import CRITICAL, PASSING, WARNING, CheckResult
from meshd.checks.maintenance import (
    DEFAULT_NODE_REASON,
    DEFAULT_SERVICE_REASON,
    NODE_MAINTENANCE_ID,
    disable_node_maintenance,
    disable_service_maintenance,
    enable_node_maintenance,
    enable_service_maintenance,
)
from meshd.checks.runner import CheckRunner
from registry.errors import NotFoundError
from registry.records import HealthCheck

from .fakes import NODE, add_check, add_service, status


def hc(check_id: str, st: str, service_id: str = "", node: str = NODE) -> HealthCheck:
    return HealthCheck(check_id, node=node, name=check_id, status=st, output=f"{check_id} out",
                       service_id=service_id)  # fmt: skip


WEB = AliasTarget(service_id="web")


def test_alias_of_a_service_counts_its_checks_and_its_nodes() -> None:
    checks = [hc("serfHealth", PASSING), hc("web-http", PASSING, "web"), hc("db", CRITICAL, "db")]
    assert aggregate(WEB, AliasSnapshot(checks)) == CheckResult(PASSING, "All checks passing.")
    checks.append(hc("web-disk", WARNING, "web"))
    assert aggregate(WEB, AliasSnapshot(checks)) == CheckResult(
        WARNING,
        'Aliased check "web-disk" failing: web-disk out',
    )
    checks.insert(0, hc("node-down", CRITICAL))  # a critical node check wins over a warning
    assert aggregate(WEB, AliasSnapshot(checks)).status == CRITICAL


def test_alias_with_no_checks_is_passing_and_missing_service_critical() -> None:
    assert aggregate(WEB, AliasSnapshot([])) == CheckResult(PASSING, "No checks found.")
    result = aggregate(AliasTarget("n2", "web"), AliasSnapshot([], service_exists=False))
    assert result == CheckResult(CRITICAL, "Service web could not be found on node n2")


def test_alias_of_a_node_ignores_service_checks_and_other_nodes() -> None:
    checks = [hc("svc", CRITICAL, "web"), hc("other", CRITICAL, node="n9"), hc("n", PASSING)]
    assert aggregate(AliasTarget(node=NODE), AliasSnapshot(checks)).status == PASSING


def test_alias_never_counts_itself() -> None:
    checks = [hc("self", CRITICAL), hc("web", PASSING, "web")]
    assert aggregate(WEB, AliasSnapshot(checks), exclude="self").status == PASSING


async def test_alias_mirrors_a_local_service_live(autojump_clock: trio.abc.Clock) -> None:
    local = LocalState(NODE, None)
    add_service(local, Name="web", Check={"ID": "web-ttl", "TTL": "1h", "Status": "passing"})
    add_service(local, Name="proxy", Check={"ID": "proxy-alias", "AliasService": "web"})
    runner = CheckRunner(local, rng=random.Random(1))
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await trio.sleep(1)
        assert status(local, "proxy-alias") == (PASSING, "All checks passing.")
        runner.ttl_update("web-ttl", CRITICAL, "db unreachable")
        await trio.sleep(1)
        assert status(local, "proxy-alias") == (
            CRITICAL,
            "Aliased check \"Service 'web' check\" failing: db unreachable",
        )
        local.remove_service("web")
        await trio.sleep(1)
        assert status(local, "proxy-alias")[0] == CRITICAL
        assert "could not be found" in status(local, "proxy-alias")[1]
        nursery.cancel_scope.cancel()


class RemoteSource:
    """An agent-provided source for another node: yields what the test feeds."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[AliasSnapshot](10)
        self.targets: list[AliasTarget] = []

    async def watch(self, target: AliasTarget) -> AsyncIterator[AliasSnapshot]:
        self.targets.append(target)
        async for snap in self.receive:
            yield snap


async def test_alias_of_a_remote_node_uses_the_agents_source(
    autojump_clock: trio.abc.Clock,
) -> None:
    local = LocalState(NODE, None)
    add_check(local, ID="n2-alive", AliasNode="n2")
    source = RemoteSource()
    async with trio.open_nursery() as nursery:
        await nursery.start(CheckRunner(local, alias_source=source).run)
        await source.send.send(AliasSnapshot([hc("serfHealth", CRITICAL, node="n2")]))
        await trio.sleep(1)
        assert status(local, "n2-alive")[0] == CRITICAL
        await source.send.send(AliasSnapshot([hc("serfHealth", PASSING, node="n2")]))
        await trio.sleep(1)
        assert status(local, "n2-alive") == (PASSING, "All checks passing.")
        nursery.cancel_scope.cancel()
    assert source.targets == [AliasTarget(node="n2")]


def test_service_maintenance_adds_and_removes_consuls_check() -> None:
    local = LocalState(NODE, None)
    add_service(local, Name="web")
    assert enable_service_maintenance(local, "web", "") is True
    check = local.checks["_service_maintenance:web"].check
    assert (check.name, check.status, check.notes, check.type) == (
        "Service Maintenance Mode",
        CRITICAL,
        DEFAULT_SERVICE_REASON,
        "maintenance",
    )
    assert (check.service_id, check.service_name) == ("web", "web")
    assert enable_service_maintenance(local, "web", "again") is False  # first reason kept
    assert local.checks["_service_maintenance:web"].check.notes == DEFAULT_SERVICE_REASON
    assert disable_service_maintenance(local, "web") is True
    assert "_service_maintenance:web" not in local.checks
    assert disable_service_maintenance(local, "web") is False
    with pytest.raises(NotFoundError, match="No service registered"):
        enable_service_maintenance(local, "nope", "")


def test_node_maintenance_with_reason() -> None:
    local = LocalState(NODE, None)
    assert enable_node_maintenance(local, "kernel upgrade") is True
    check = local.checks[NODE_MAINTENANCE_ID].check
    assert (check.name, check.status, check.notes, check.service_id) == (
        "Node Maintenance Mode",
        CRITICAL,
        "kernel upgrade",
        "",
    )
    assert disable_node_maintenance(local) is True and NODE_MAINTENANCE_ID not in local.checks
    enable_node_maintenance(local)
    assert local.checks[NODE_MAINTENANCE_ID].check.notes == DEFAULT_NODE_REASON
