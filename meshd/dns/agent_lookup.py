"""``Lookup`` over the agent's named reads: what ``meshd agent`` serves DNS from.

The reads are the ones behind the HTTP API (``meshd/agent/reads.py``):
``health.service`` (``/v1/health/service`` and, with ``connect``,
``/v1/health/connect``) and ``catalog.node``. They run stale when
``dns_config.allow_stale`` (any server answers; one whose contact with the
leader is older than ``max_stale`` forwards to the leader), else with the
default consistency, as Consul's DNS interface does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from meshd.wire import ReadOptions

from .records import Row
from .settings import DNSSettings

if TYPE_CHECKING:
    from meshd.wire import ReadResult

__all__ = ["AgentLookup", "Reader"]


class Reader(Protocol):
    """The agent's read entry point (``Agent.read``)."""

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        """Run the named read with ``opts`` (consistency, staleness)."""
        ...


def _no_index() -> int | None:
    return None


class AgentLookup:
    """A ``Lookup`` that asks ``reader`` (the agent); errors propagate (SERVFAIL).

    ``state_index`` is the catalog's change counter where the agent has one
    (a server's state store: the highest index of its nodes, services and
    checks tables); without it answers are cached for ``cache_ttl``.
    """

    def __init__(
        self,
        reader: Reader,
        settings: DNSSettings,
        *,
        state_index: Callable[[], int | None] = _no_index,
    ) -> None:
        self._reader = reader
        self._state_index = state_index
        consistency = "stale" if settings.allow_stale else "default"
        self._opts = ReadOptions(
            index=0, wait=0.0, consistency=consistency, max_stale=settings.max_stale
        )

    async def health_service(
        self, name: str, tag: str | None, connect: bool, passing_only: bool
    ) -> Sequence[Row]:
        args = {
            "name": name,
            "passing": passing_only,
            "tags": [tag] if tag else [],
            "node_meta": {},
            "connect": connect,
        }
        rows = await self._health(args)
        if rows:
            return rows
        # DNS names arrive in lower case; Consul's catalog matches service
        # names without regard to case, so "Web" answers web.service.consul.
        out: list[Row] = []
        for other in await self._case_variants(name):
            out.extend(await self._health({**args, "name": other}))
        return out

    async def _health(self, args: Mapping[str, Any]) -> list[Row]:
        result = await self._reader.read("health.service", args, self._opts)
        value = result.value
        return list(value) if isinstance(value, list) else []

    async def _case_variants(self, name: str) -> list[str]:
        """The registered service names equal to ``name`` but for case."""
        result = await self._reader.read("catalog.services", {"node_meta": {}}, self._opts)
        names = result.value if isinstance(result.value, Mapping) else {}
        lower = name.lower()
        return sorted(n for n in names if isinstance(n, str) and n != name and n.lower() == lower)

    async def node(self, name: str) -> Mapping[str, Any] | None:
        found = await self._node(name)
        if found is not None:
            return found
        # As for services: "Web01" answers web01.node.consul, as in Consul.
        result = await self._reader.read("catalog.nodes", {"node_meta": {}}, self._opts)
        lower = name.lower()
        for row in result.value if isinstance(result.value, list) else []:
            other = row.get("Node") if isinstance(row, Mapping) else None
            if isinstance(other, str) and other != name and other.lower() == lower:
                return await self._node(other)
        return None

    async def _node(self, name: str) -> Mapping[str, Any] | None:
        result = await self._reader.read("catalog.node", {"name": name}, self._opts)
        value = result.value
        return value if isinstance(value, Mapping) else None

    def state_index(self) -> int | None:
        return self._state_index()
