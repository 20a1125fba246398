"""Intentions table: upsert/delete by ID, list/exact/match/check reads.

An upsert stores the intention with its precedence computed once
(``Intention.with_precedence``, Consul's ``UpdatePrecedence``). Matches are
ordered by that stored precedence, then lexicographically by (SourceNS,
SourceName, DestinationNS, DestinationName) like Consul's
``IntentionPrecedenceSorter``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..commands import IntentionUpsert
from ..errors import ErrorCode
from ..records import INTENTION_WILDCARD as WILDCARD
from ..records import Intention
from ..results import OK, Result, failed
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore, WriteTx


def _sort_key(ixn: Intention) -> tuple[int, str, str, str, str]:
    return (
        -ixn.precedence,
        ixn.source_ns,
        ixn.source_name,
        ixn.destination_ns,
        ixn.destination_name,
    )


class IntentionTables:
    """Intentions by ID and by (source, destination) pair."""

    def __init__(self) -> None:
        self.intentions: Table[Intention] = Table(
            "intentions",
            Intention,
            lambda i: i.id,
            {
                "pair": lambda i: (
                    (i.source_ns, i.source_name, i.destination_ns, i.destination_name),
                ),
                "destination": lambda i: (i.destination_name,),
                "source": lambda i: (i.source_name,),
            },
        )

    def tables(self) -> list[Table[Intention]]:
        """Tables in snapshot order."""
        return [self.intentions]


def upsert_intention(store: StateStore, tx: WriteTx, cmd: IntentionUpsert) -> Result:
    """Create or replace an intention; a second one for the same pair is refused."""
    table = store.intentions.intentions
    ixn = cmd.intention
    pair = (ixn.source_ns, ixn.source_name, ixn.destination_ns, ixn.destination_name)
    for other in table.by("pair", pair).values():
        if other.id != ixn.id:
            return failed(
                ErrorCode.CONFLICT,
                f"duplicate intention found: {ixn.source_name} => {ixn.destination_name}"
                f" (ID {other.id})",
            )
    existing = table.get(ixn.id)
    new = replace(
        ixn.with_precedence(),
        created_at=existing.created_at if existing else cmd.now,
        updated_at=cmd.now,
        create_index=existing.create_index if existing else tx.index,
        modify_index=tx.index,
    )
    table.put(tx, new)
    tx.touch("intentions")
    return OK


def delete_intention(store: StateStore, tx: WriteTx, intention_id: str) -> Result:
    """Delete by ID; an unknown ID is an error, as in Consul."""
    if store.intentions.intentions.delete(tx, intention_id) is None:
        return failed(ErrorCode.NOT_FOUND, f"Intention with ID {intention_id!r} not found")
    tx.touch("intentions")
    return OK


# -- reads -------------------------------------------------------------------------------------


def _index(store: StateStore, ws: WatchSet | None) -> int:
    store.watch(ws, "intentions")
    return max(1, store.index_of("intentions"))


def intention_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[Intention]]:
    """/v1/connect/intentions: every intention in precedence order."""
    idx = _index(store, ws)
    return idx, sorted(store.intentions.intentions.values(), key=_sort_key)


def intention_get(
    store: StateStore, ws: WatchSet | None, intention_id: str
) -> tuple[int, Intention | None]:
    """/v1/connect/intentions/:id."""
    return _index(store, ws), store.intentions.intentions.get(intention_id)


def intention_exact(
    store: StateStore, ws: WatchSet | None, source: str, destination: str
) -> tuple[int, Intention | None]:
    """/v1/connect/intentions/exact?source=&destination= (no wildcard expansion)."""
    idx = _index(store, ws)
    bucket = store.intentions.intentions.by("pair", ("default", source, "default", destination))
    return idx, next(iter(bucket.values()), None)


def _matches(store: StateStore, by: str, name: str) -> list[Intention]:
    table = store.intentions.intentions
    found = [*table.by(by, name).values()]
    if name != WILDCARD:
        found.extend(table.by(by, WILDCARD).values())
    return sorted(found, key=_sort_key)


def intention_match(
    store: StateStore, ws: WatchSet | None, by: str, name: str
) -> tuple[int, list[Intention]]:
    """/v1/connect/intentions/match?by=source|destination&name=: intentions that
    apply to ``name`` on that side (exact or ``*``), highest precedence first."""
    if by not in ("source", "destination"):
        raise ValueError(f"by must be 'source' or 'destination', not {by!r}")
    return _index(store, ws), _matches(store, by, name)


def intention_check(
    store: StateStore, ws: WatchSet | None, source: str, destination: str, default_allow: bool
) -> tuple[int, bool]:
    """/v1/connect/intentions/check: would ``source`` be allowed to reach ``destination``?

    The highest-precedence intention whose source matches decides; an L7
    intention (Permissions) cannot be decided without a request and counts as
    deny here, as Consul's check endpoint does. No match: ``default_allow``.
    """
    idx = _index(store, ws)
    for ixn in _matches(store, "destination", destination):
        if ixn.source_name in (source, WILDCARD):
            if ixn.permissions:
                return idx, False
            return idx, ixn.action == "allow"
    return idx, default_allow
