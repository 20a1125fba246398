"""Authorizing inbound connections without a round trip per connection (sans-I/O).

The proxy watches ``/v1/connect/intentions/match?by=destination&name=<svc>``
for each local service. When an intention applies to (source, destination)
``connect.intentions.IntentionIndex`` decides locally. When none applies the
default policy decides, which only the agent knows: the driver asks
``POST /v1/agent/connect/authorize`` once and ``remember``s the answer until
the destination's intentions change (a new *generation*). An answer that
arrives after a change is dropped so a stale default never outlives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..intentions import Decision, Intention, IntentionIndex, IntentionLike
from .errors import ProxyConfigError


def intention_from_json(body: Mapping[str, Any]) -> Intention:
    """A Consul Intention JSON object as a ``connect.intentions.Intention``.

    ``Permissions`` null/absent means L4; any list (even one the proxy
    cannot read) makes it L7, which denies L4 connections. ``Precedence``
    is taken as the agent computed it when the intention was written.
    Raises ``ProxyConfigError`` when the object lacks an ID, names or an
    integer ``Precedence``.
    """
    ixn_id = body.get("ID")
    source = body.get("SourceName")
    dest = body.get("DestinationName")
    if not isinstance(ixn_id, str) or not ixn_id:
        raise ProxyConfigError("Intention.ID", "is required")
    if not isinstance(source, str) or not isinstance(dest, str) or not source or not dest:
        raise ProxyConfigError(f"Intention[{ixn_id}]", "SourceName and DestinationName required")
    perms = body.get("Permissions")
    permissions: tuple[Any, ...] = tuple(perms) if isinstance(perms, list) else ()
    if perms is not None and not isinstance(perms, list):
        permissions = (perms,)
    precedence = body.get("Precedence")
    if not isinstance(precedence, int) or isinstance(precedence, bool):
        raise ProxyConfigError(f"Intention[{ixn_id}].Precedence", "must be an integer")
    return Intention(
        id=ixn_id,
        source_name=source,
        destination_name=dest,
        source_ns=str(body.get("SourceNS") or "default"),
        destination_ns=str(body.get("DestinationNS") or "default"),
        action=str(body.get("Action") or "").lower(),
        permissions=permissions,
        precedence=precedence,
    )


def intentions_from_match(body: Any, destination: str) -> list[Intention]:
    """The intentions in a ``/v1/connect/intentions/match`` answer for ``destination``.

    If any entry is malformed, none is returned: leaving only that one out
    could let a lower-precedence intention decide in its place, while with
    none every connection to ``destination`` asks the agent, which decides
    on the stored intentions.
    """
    if not isinstance(body, Mapping):
        return []
    out: list[Intention] = []
    for item in body.get(destination) or ():
        if not isinstance(item, Mapping):
            return []
        try:
            out.append(intention_from_json(item))
        except ProxyConfigError:
            return []
    return out


class Authorizer:
    """Intention indexes per destination plus a cache of the agent's defaults."""

    def __init__(self) -> None:
        self._index: dict[str, IntentionIndex] = {}
        self._generation: dict[str, int] = {}
        self._cache: dict[tuple[str, str], Decision] = {}

    def generation(self, destination: str) -> int:
        """Bumped each time the destination's intentions are replaced."""
        return self._generation.get(destination, 0)

    def set_intentions(self, destination: str, intentions: Iterable[IntentionLike]) -> None:
        """Replace the destination's intentions; its cached defaults are dropped."""
        self._index[destination] = IntentionIndex(intentions)
        self._generation[destination] = self.generation(destination) + 1
        for key in [k for k in self._cache if k[1] == destination]:
            del self._cache[key]

    def forget(self, destination: str) -> None:
        """Drop everything known about ``destination`` (its sidecar is gone)."""
        self._index.pop(destination, None)
        self._generation[destination] = self.generation(destination) + 1
        for key in [k for k in self._cache if k[1] == destination]:
            del self._cache[key]

    def decide(self, source: str, destination: str) -> Decision | None:
        """The decision if known locally, or ``None``: ask the agent, then ``remember``."""
        index = self._index.get(destination)
        if index is not None:
            found = index.best(source, destination)
            if found is not None:
                return index.decide(source, destination, default_allow=False)
        return self._cache.get((source, destination))

    def remember(self, source: str, destination: str, decision: Decision, generation: int) -> None:
        """Cache the agent's answer unless the intentions changed since it was asked."""
        if generation == self.generation(destination):
            self._cache[(source, destination)] = decision
