"""The catalog as the DNS interface sees it: the ``Lookup`` protocol.

The agent implements ``Lookup`` over its read API (the same reads that
serve ``/v1/health/service/<name>`` and ``/v1/catalog/node/<name>``);
``StaticLookup`` is an in-memory one over Consul-shaped rows, for tests,
benchmarks and fixtures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from .records import Row, node_object, tag_matches

__all__ = ["Lookup", "StaticLookup"]


class Lookup(Protocol):
    """What the DNS server asks of the catalog.

    Names and tags arrive in lower case (DNS is case-insensitive): match
    service names, node names and tags without regard to case, as Consul's
    catalog does. The DNS layer filters health and tags again itself, so a
    lookup may return more rows than asked for, never fewer.

    Reads should honour ``DNSSettings.allow_stale``/``max_stale`` (a stale
    read from any server, retried as a consistent read when the server's
    last contact with the leader is older than ``max_stale``).

    Errors: any exception except cancellation becomes SERVFAIL for that
    query and is logged; cancellation propagates.
    """

    async def health_service(
        self, name: str, tag: str | None, connect: bool, passing_only: bool
    ) -> Sequence[Row]:
        """Rows of ``/v1/health/service/<name>`` (``/v1/health/connect/<name>`` when
        ``connect``), filtered by ``tag`` and, with ``passing_only``, to passing rows."""
        ...

    async def node(self, name: str) -> Mapping[str, Any] | None:
        """``/v1/catalog/node/<name>`` (or its ``Node`` object); None when unknown."""
        ...

    def state_index(self) -> int | None:
        """A number that changes whenever any answer could change, or None if unknown.

        The highest modify index of the nodes, services and checks tables is
        right (not the Raft index: a KV write would empty the DNS cache).
        Called for every cached answer: must be cheap and synchronous. With
        None, answers are reused for at most ``DNSSettings.cache_ttl`` seconds.
        """
        ...


class StaticLookup:
    """A ``Lookup`` over rows held in memory; ``replace`` swaps them atomically.

    ``connect`` queries return the rows whose service is a
    ``connect-proxy`` for the name (``Service.Proxy.DestinationServiceName``)
    or that are ``Connect.Native``, as ``/v1/health/connect`` does.
    """

    def __init__(self, rows: Iterable[Row] = (), nodes: Iterable[Mapping[str, Any]] = ()) -> None:
        self._rows: list[Row] = []
        self._nodes: dict[str, Mapping[str, Any]] = {}
        self._index = 0
        self.calls = 0
        self.replace(rows, nodes)

    def replace(self, rows: Iterable[Row], nodes: Iterable[Mapping[str, Any]] = ()) -> None:
        """Serve ``rows`` (and ``nodes``, plus every node the rows name) from now on."""
        self._rows = list(rows)
        found: dict[str, Mapping[str, Any]] = {}
        for row in self._rows:
            node = row.get("Node")
            if isinstance(node, Mapping):
                found[str(node.get("Node", "")).lower()] = node
        for node in nodes:
            inner = node_object(node)
            found[str(inner.get("Node", "")).lower()] = inner
        self._nodes = found
        self._index += 1

    async def health_service(
        self, name: str, tag: str | None, connect: bool, passing_only: bool
    ) -> Sequence[Row]:
        self.calls += 1
        out = []
        for row in self._rows:
            if not _serves(row.get("Service") or {}, name.lower(), connect):
                continue
            if not tag_matches(row, tag):
                continue
            if passing_only and any(c.get("Status") != "passing" for c in row.get("Checks", ())):
                continue
            out.append(row)
        return out

    async def node(self, name: str) -> Mapping[str, Any] | None:
        self.calls += 1
        return self._nodes.get(name.lower())

    def state_index(self) -> int | None:
        return self._index


def _serves(service: Mapping[str, Any], name: str, connect: bool) -> bool:
    if not connect:
        return str(service.get("Service", "")).lower() == name
    if service.get("Kind") == "connect-proxy":
        proxy = service.get("Proxy") or {}
        return str(proxy.get("DestinationServiceName", "")).lower() == name
    native = bool((service.get("Connect") or {}).get("Native"))
    return native and str(service.get("Service", "")).lower() == name
