"""Alias checks (Consul agent/checks/alias.go ``CheckAlias``).

An alias check mirrors the health of another service instance
(``AliasService``, on ``AliasNode`` or on this agent's node) or of a node
(``AliasNode`` alone). Its status is the worst of the target's checks: the
target service's own checks plus the node-level checks of its node (a
service is unhealthy when its node is). No checks is passing; an aliased
service that does not exist is critical.

The checks come from an ``AliasSource``. ``LocalAliasSource`` serves
targets on this agent's node from its local state, as Consul does; the agent
provides a source for other nodes, built on blocking queries of
``/v1/health/node/<node>`` (or the equivalent RPC).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from registry.records import HealthCheck

from .base import CRITICAL, PASSING, WARNING, CheckResult

if TYPE_CHECKING:
    from ..agent.local import LocalState

__all__ = ["AliasSnapshot", "AliasSource", "AliasTarget", "LocalAliasSource", "aggregate"]


@dataclass(frozen=True, slots=True)
class AliasTarget:
    """What an alias check mirrors: a service instance (``service_id``) and/or a node.

    ``node`` "" means this agent's node.
    """

    node: str = ""
    service_id: str = ""

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> AliasTarget:
        """The target named by a definition's ``AliasNode``/``AliasService``."""
        return cls(str(spec.get("AliasNode") or ""), str(spec.get("AliasService") or ""))


@dataclass(frozen=True, slots=True)
class AliasSnapshot:
    """The target node's checks at one moment (node-level and its services').

    ``service_exists`` is False when the aliased service is not registered
    on the node (then the alias is critical whatever the checks say).
    """

    checks: Sequence[HealthCheck]
    service_exists: bool = True


class AliasSource(Protocol):
    """Where alias checks get the health of their targets."""

    def watch(self, target: AliasTarget) -> AsyncIterator[AliasSnapshot]:
        """Yield a snapshot now and again each time the target's checks change.

        Runs until the consumer stops iterating or is cancelled (an async
        generator is closed by the runner). Transient failures are retried
        inside; an exception ends the watch and the runner restarts it after
        a back-off, leaving the alias's status as it was.
        """
        ...


def aggregate(target: AliasTarget, snapshot: AliasSnapshot, *, exclude: str = "") -> CheckResult:
    """The alias's status and output for ``snapshot``; pure (Consul ``processChecks``).

    ``exclude`` is the alias check's own ID, never counted towards itself.
    """
    status, output = PASSING, "No checks found."
    found = False
    for chk in snapshot.checks:
        if chk.check_id == exclude or (target.node and chk.node != target.node):
            continue
        matches = bool(target.service_id) and chk.service_id == target.service_id
        if chk.service_id and not matches:
            continue
        found = found or matches
        if chk.status in (CRITICAL, WARNING):
            status, output = chk.status, f'Aliased check "{chk.name}" failing: {chk.output}'
            if chk.status == CRITICAL:
                break  # nothing is worse; a warning keeps looking for a critical
        elif status == PASSING:
            output = "All checks passing."
    if target.service_id and not found and not snapshot.service_exists:
        node = target.node or "this node"
        return CheckResult(
            CRITICAL, f"Service {target.service_id} could not be found on node {node}"
        )
    return CheckResult(status, output)


class LocalAliasSource:
    """Serves alias targets on this agent's node from the agent's local state."""

    def __init__(self, local: LocalState) -> None:
        self.local = local

    def snapshot(self, target: AliasTarget) -> AliasSnapshot:
        """The local checks now, and whether the target service is registered."""
        checks = [c.check for c in self.local.checks.values()]
        exists = not target.service_id or target.service_id in self.local.services
        return AliasSnapshot(checks, exists)

    async def watch(self, target: AliasTarget) -> AsyncIterator[AliasSnapshot]:
        """Yield a snapshot at once and after every change of the local state."""
        while True:
            version = self.local.version
            yield self.snapshot(target)
            if self.local.version == version:
                await self.local.wait_changed()
