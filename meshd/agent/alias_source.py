"""Alias checks whose target is another node: its health, followed with
blocking queries through the agent's normal read path (a server locally, a
client through its server pool), like Consul's CheckAlias does over RPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import trio

from registry.records import HealthCheck

from ..checks.alias import AliasSnapshot, AliasTarget
from ..errors import MeshdError
from .wire import ReadOptions, ReadResult

Read = Callable[[str, Mapping[str, Any], ReadOptions], Awaitable[ReadResult]]


def _check(c: Mapping[str, Any]) -> HealthCheck:
    return HealthCheck(
        check_id=str(c.get("CheckID", "")),
        node=str(c.get("Node", "")),
        name=str(c.get("Name", "")),
        status=str(c.get("Status", "")),
        output=str(c.get("Output", "")),
        service_id=str(c.get("ServiceID", "")),
        service_name=str(c.get("ServiceName", "")),
    )


class CatalogAliasSource:
    """``AliasSource`` for targets on other nodes."""

    def __init__(self, read: Read, *, retry: float = 1.0) -> None:
        self._read = read
        self._retry = retry

    async def watch(self, target: AliasTarget) -> AsyncIterator[AliasSnapshot]:
        """Yield the target node's checks now and whenever they change;
        servers being unreachable is retried here, never raised."""
        index = 0
        while True:
            opts = ReadOptions(index=index, wait=300.0, consistency="stale")
            try:
                res = await self._read("health.node", {"name": target.node}, opts)
                exists = True
                if target.service_id:
                    node = await self._read(
                        "catalog.node", {"name": target.node}, ReadOptions(consistency="stale")
                    )
                    services = (node.value or {}).get("Services") or {}
                    exists = target.service_id in services
            except (MeshdError, OSError, trio.TooSlowError):
                await trio.sleep(self._retry)
                continue
            if index == 0 or res.index != index:
                yield AliasSnapshot([_check(c) for c in res.value or []], exists)
            index = res.index if res.index >= index else 0
