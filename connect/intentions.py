"""Intention decisions: may ``source`` open a connection to ``destination``?

Follows Consul's ``ConnectAuthorize`` (agent/connect_auth.go) and
https://developer.hashicorp.com/consul/docs/connect/intentions#precedence-and-match-order:

- an intention applies when its destination is ``destination`` or ``*`` and
  its source is ``source`` or ``*`` (namespaces likewise, "default" unless
  given);
- the highest ``precedence`` wins. Like Consul (``Intention.UpdatePrecedence``
  in agent/structs/intention.go) the precedence is computed once, when the
  intention is written to the registry, and travels with it (the API's
  ``Precedence``); this module reads it and never recomputes it. Equal
  precedence falls back to Consul's lexicographic order of (SourceNS,
  SourceName, DestinationNS, DestinationName), then the ID;
- an L7 intention (non-empty ``permissions``) cannot be evaluated without a
  request, so for an L4 connection it decides deny;
- nothing matches: the default policy (``default_allow``) decides.

``decide`` is the reference; ``IntentionIndex`` gives the same answers in a
handful of dict lookups for the proxy's per-connection path.

Both take anything shaped like ``IntentionLike``: the proxy builds
``Intention`` values from the agent's JSON, the agent passes its registry
records as they are (they have the same attributes). This package imports
nothing of registry, raft or meshd.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_NS = "default"
WILDCARD = "*"
_ALLOW = "allow"


class IntentionLike(Protocol):
    """What an intention decision reads (Consul ``structs.Intention`` fields).

    ``precedence`` is the one computed when the intention was written
    (higher wins); ``permissions`` non-empty makes it an L7 intention.
    """

    @property
    def id(self) -> str: ...
    @property
    def source_ns(self) -> str: ...
    @property
    def source_name(self) -> str: ...
    @property
    def destination_ns(self) -> str: ...
    @property
    def destination_name(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def permissions(self) -> Sequence[Any]: ...
    @property
    def precedence(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Intention:
    """An intention as connect receives it over the API (``Precedence`` included)."""

    id: str
    source_name: str
    destination_name: str
    precedence: int
    source_ns: str = DEFAULT_NS
    destination_ns: str = DEFAULT_NS
    action: str = ""
    permissions: tuple[Any, ...] = ()


SortKey = tuple[int, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of an authorization; ``intention_id`` is ``None`` when the
    default policy decided."""

    allowed: bool
    reason: str
    intention_id: str | None


def _sort_key(ixn: IntentionLike) -> SortKey:
    return (
        -ixn.precedence,
        ixn.source_ns,
        ixn.source_name,
        ixn.destination_ns,
        ixn.destination_name,
        ixn.id,
    )


def _describe(ixn: IntentionLike) -> str:
    # Consul's Intention.String(), names quoted.
    detail = (
        f"Permissions: {len(ixn.permissions)}"
        if ixn.permissions
        else f"Action: {ixn.action.upper()}"
    )
    return (
        f'"{ixn.source_name}" => "{ixn.destination_name}" '
        f"(ID: {ixn.id}, Precedence: {ixn.precedence}, {detail})"
    )


def decision_for(ixn: IntentionLike | None, *, default_allow: bool) -> Decision:
    """The decision once the winning intention (or none) is known."""
    if ixn is None:
        policy = "allow" if default_allow else "deny"
        return Decision(
            allowed=default_allow,
            reason=f"Default behavior configured by connect.default_intention_policy ({policy})",
            intention_id=None,
        )
    if ixn.permissions:
        return Decision(False, f"Matched L7 intention: {_describe(ixn)}", ixn.id)
    return Decision(ixn.action == _ALLOW, f"Matched L4 intention: {_describe(ixn)}", ixn.id)


def _applies(
    ixn: IntentionLike, source: str, destination: str, source_ns: str, dest_ns: str
) -> bool:
    return (
        ixn.destination_name in (destination, WILDCARD)
        and ixn.source_name in (source, WILDCARD)
        and ixn.destination_ns in (dest_ns, WILDCARD)
        and ixn.source_ns in (source_ns, WILDCARD)
    )


def decide(
    intentions: Iterable[IntentionLike],
    source: str,
    destination: str,
    *,
    default_allow: bool,
    source_ns: str = DEFAULT_NS,
    destination_ns: str = DEFAULT_NS,
) -> Decision:
    """Authorize an L4 connection from ``source`` to ``destination``.

    Linear in the number of intentions; use ``IntentionIndex`` on hot paths.
    """
    best = min(
        (i for i in intentions if _applies(i, source, destination, source_ns, destination_ns)),
        key=_sort_key,
        default=None,
    )
    return decision_for(best, default_allow=default_allow)


_DEFAULT_ALLOW = decision_for(None, default_allow=True)
_DEFAULT_DENY = decision_for(None, default_allow=False)


@dataclass(frozen=True, slots=True)
class _Entry:
    key: SortKey
    intention: IntentionLike
    decision: Decision


def _candidates(ns: str, name: str) -> tuple[tuple[str, str], ...]:
    keys = ((ns, name), (ns, WILDCARD), (WILDCARD, name), (WILDCARD, WILDCARD))
    return tuple(dict.fromkeys(keys))


class IntentionIndex:
    """An immutable index of intentions answering ``decide`` in O(1).

    For each (destination ns, name) the best intention per (source ns,
    name) is kept, so a decision is at most 16 dict lookups whatever the
    number of intentions. Build a new index when intentions change.
    """

    __slots__ = ("_by_dest", "_size")

    def __init__(self, intentions: Iterable[IntentionLike]) -> None:
        by_dest: dict[tuple[str, str], dict[tuple[str, str], _Entry]] = {}
        size = 0
        for ixn in intentions:
            size += 1
            bucket = by_dest.setdefault((ixn.destination_ns, ixn.destination_name), {})
            src = (ixn.source_ns, ixn.source_name)
            key = _sort_key(ixn)
            current = bucket.get(src)
            if current is None or key < current.key:
                # The decision of a matched intention does not depend on the
                # default policy, so it is built once here, not per connection.
                bucket[src] = _Entry(key, ixn, decision_for(ixn, default_allow=False))
        self._by_dest = by_dest
        self._size = size

    def __len__(self) -> int:
        return self._size

    def _lookup(self, source: str, destination: str, source_ns: str, dest_ns: str) -> _Entry | None:
        found: _Entry | None = None
        sources = _candidates(source_ns, source)
        for dest_key in _candidates(dest_ns, destination):
            bucket = self._by_dest.get(dest_key)
            if bucket is None:
                continue
            for src_key in sources:
                hit = bucket.get(src_key)
                if hit is not None and (found is None or hit.key < found.key):
                    found = hit
        return found

    def best(
        self,
        source: str,
        destination: str,
        *,
        source_ns: str = DEFAULT_NS,
        destination_ns: str = DEFAULT_NS,
    ) -> IntentionLike | None:
        """The intention that decides, or ``None`` if none applies."""
        found = self._lookup(source, destination, source_ns, destination_ns)
        return None if found is None else found.intention

    def decide(
        self,
        source: str,
        destination: str,
        *,
        default_allow: bool,
        source_ns: str = DEFAULT_NS,
        destination_ns: str = DEFAULT_NS,
    ) -> Decision:
        """Same answer as the module-level ``decide`` over these intentions."""
        found = self._lookup(source, destination, source_ns, destination_ns)
        if found is not None:
            return found.decision
        return _DEFAULT_ALLOW if default_allow else _DEFAULT_DENY
