"""Intentions, stored as the sources of ``service-intentions`` config entries.

Since Consul 1.9 the intentions API and the ``service-intentions`` config
entries are one store (agent/consul/state/config_entry_intention.go,
agent/structs/config_entry_intentions.go ``ToIntentions``): each source of
the entry named after a destination is one intention. An intention written
through ``/v1/connect/intentions`` upserts that source in the destination's
entry (creating the entry), a delete removes it (and the entry once empty);
the ID-based endpoints find a source by its ``LegacyID``. The FSM applies
these mutations in one transaction, as Consul's ``IntentionMutation`` does.

The old ``intentions`` table (records written before the one store) is kept
only to be read from a snapshot or an old log: the leader moves its records
into entries once (``IntentionsMigrate``, Consul's legacy intention
migration) and nothing writes it any more.

Reads convert every source to an ``Intention`` record with its precedence
computed (Consul's ``UpdatePrecedence``); matches are ordered by precedence,
then (SourceNS, SourceName, DestinationNS, DestinationName) like Consul's
``IntentionPrecedenceSorter``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..commands import IntentionDelete, IntentionUpsert
from ..errors import ErrorCode
from ..records import INTENTION_WILDCARD as WILDCARD
from ..records import ConfigEntry, Intention
from ..results import OK, Result, failed
from ..shapes import rfc3339
from .config_entries import delete_entry, put_entry
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore, WriteTx

KIND = "service-intentions"
_KIND_KEY = f"config:{KIND}"
JSON = Any


def _sort_key(ixn: Intention) -> tuple[int, str, str, str, str]:
    return (
        -ixn.precedence,
        ixn.source_ns,
        ixn.source_name,
        ixn.destination_ns,
        ixn.destination_name,
    )


class IntentionTables:
    """The pre-1.9 intentions table: read from old snapshots/logs, migrated by the leader."""

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


# -- entry <-> intention -------------------------------------------------------------------------


def _parse_time(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def _str(src: Mapping[str, Any], key: str) -> str:
    value = src.get(key)
    return value if isinstance(value, str) else ""


def _sources(entry: ConfigEntry | None) -> list[dict[str, Any]]:
    if entry is None:
        return []
    raw = entry.body.get("Sources")
    return [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []


def _local(src: Mapping[str, Any]) -> bool:
    # Peer and sameness-group sources never name a local service.
    return not (src.get("Peer") or src.get("SamenessGroup"))


def source_intention(entry: ConfigEntry, src: Mapping[str, Any]) -> Intention:
    """One source of a service-intentions entry as an intention (Consul's ``ToIntention``)."""
    perms = src.get("Permissions")
    permissions = tuple(perms) if isinstance(perms, list) else ()
    legacy_meta = src.get("LegacyMeta")
    meta = legacy_meta if isinstance(legacy_meta, dict) else entry.body.get("Meta")
    return Intention(
        id=_str(src, "LegacyID"),
        source_name=_str(src, "Name"),
        destination_name=entry.name,
        source_ns=_str(src, "Namespace") or "default",
        destination_ns=_str(entry.body, "Namespace") or "default",
        source_type=_str(src, "Type") or "consul",
        action="" if permissions else _str(src, "Action").lower(),
        permissions=permissions,
        description=_str(src, "Description"),
        meta=dict(meta) if isinstance(meta, dict) else {},
        created_at=_parse_time(src.get("LegacyCreateTime")),
        updated_at=_parse_time(src.get("LegacyUpdateTime")),
        create_index=entry.create_index,
        modify_index=entry.modify_index,
    ).with_precedence()


def _entry_intentions(entry: ConfigEntry | None) -> list[Intention]:
    if entry is None:
        return []
    return [source_intention(entry, s) for s in _sources(entry) if _local(s) and _str(s, "Name")]


def _source_json(ixn: Intention, legacy_id: str, created: float, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {"Name": ixn.source_name}
    if ixn.permissions:
        out["Permissions"] = list(ixn.permissions)
    else:
        out["Action"] = ixn.action
    out["Precedence"] = ixn.with_precedence().precedence
    out["Type"] = ixn.source_type or "consul"
    if ixn.description:
        out["Description"] = ixn.description
    if legacy_id:
        out["LegacyID"] = legacy_id
    if ixn.meta:
        out["LegacyMeta"] = dict(ixn.meta)
    out["LegacyCreateTime"] = rfc3339(created)
    out["LegacyUpdateTime"] = rfc3339(now)
    return out


def _write_sources(
    tx: WriteTx, store: StateStore, name: str, sources: list[dict[str, Any]]
) -> None:
    """Store ``name``'s entry with ``sources`` (highest precedence first), or
    delete it when none is left."""
    table = store.config.entries
    existing = table.get((KIND, name))
    if not sources:
        delete_entry(tx, table, KIND, name)
    else:
        ordered = sorted(sources, key=lambda s: -int(s.get("Precedence") or 0))
        body = {**(existing.body if existing else {}), "Sources": ordered}
        put_entry(tx, table, ConfigEntry(KIND, name, body), existing)
    tx.touch("intentions")


def _find_legacy(store: StateStore, legacy_id: str) -> tuple[ConfigEntry, int] | None:
    for entry in store.config.entries.by("kind", KIND).values():
        for i, src in enumerate(_sources(entry)):
            if src.get("LegacyID") == legacy_id:
                return entry, i
    return None


def _find_name(sources: list[dict[str, Any]], name: str) -> int | None:
    for i, src in enumerate(sources):
        if _local(src) and src.get("Name") == name and _str(src, "Namespace") in ("", "default"):
            return i
    return None


# -- writes --------------------------------------------------------------------------------------


def upsert_intention(store: StateStore, tx: WriteTx, cmd: IntentionUpsert) -> Result:
    """Create or replace an intention as a source of its destination's entry.

    With an ID, the source whose ``LegacyID`` it is is replaced (moved to
    another entry when the destination changed); without one, the source
    named ``SourceName`` is (Consul's ``UpsertSourceByName``). A source of
    the same name with another ID is a duplicate, as in Consul.
    """
    ixn = cmd.intention
    dest = ixn.destination_name
    by_id = _find_legacy(store, ixn.id) if ixn.id else None
    sources = _sources(store.config.entries.get((KIND, dest)))
    pair = _find_name(sources, ixn.source_name)
    if pair is not None and ixn.id and sources[pair].get("LegacyID") != ixn.id:
        other = _str(sources[pair], "LegacyID")
        return failed(
            ErrorCode.CONFLICT,
            f"duplicate intention found: {ixn.source_name} => {dest} (ID {other})",
        )
    old: dict[str, Any] | None = None
    if by_id is not None:
        entry, i = by_id
        old = _sources(entry)[i]
        if entry.name != dest:
            _write_sources(tx, store, entry.name, [s for s in _sources(entry) if s is not old])
            sources = _sources(store.config.entries.get((KIND, dest)))
        else:
            pair = i
    elif pair is not None:
        old = sources[pair]
    created = _parse_time(old.get("LegacyCreateTime")) if old else 0.0
    legacy_id = ixn.id or (_str(old, "LegacyID") if old else "")
    new = _source_json(ixn, legacy_id, created or cmd.now, cmd.now)
    if old is not None and pair is not None and sources[pair] is old:
        sources[pair] = new
    else:
        sources.append(new)
    _write_sources(tx, store, dest, sources)
    return OK


def delete_intention(store: StateStore, tx: WriteTx, cmd: IntentionDelete) -> Result:
    """Remove the source with ``LegacyID`` ``cmd.id``, or (no ID) the source
    ``cmd.source`` of ``cmd.destination``'s entry; a missing one is NOT_FOUND."""
    if cmd.id:
        found = _find_legacy(store, cmd.id)
        if found is None:
            return failed(ErrorCode.NOT_FOUND, f"Intention with ID {cmd.id!r} not found")
        entry, i = found
    else:
        got = store.config.entries.get((KIND, cmd.destination))
        at = _find_name(_sources(got), cmd.source)
        if got is None or at is None:
            return failed(
                ErrorCode.NOT_FOUND, f"Intention {cmd.source} => {cmd.destination} not found"
            )
        entry, i = got, at
    sources = _sources(entry)
    del sources[i]
    _write_sources(tx, store, entry.name, sources)
    return OK


def migrate_intentions(store: StateStore, tx: WriteTx) -> Result:
    """Move every record of the old intentions table into entries, once.

    A source already in the destination's entry wins (it was written
    later, through the one store); the old table is emptied, so applying
    this again changes nothing.
    """
    old = store.intentions.intentions
    records = sorted(old.values(), key=lambda i: (i.create_index, i.id))
    if not records:
        return OK
    for ixn in records:
        sources = _sources(store.config.entries.get((KIND, ixn.destination_name)))
        if _find_name(sources, ixn.source_name) is None and _find_legacy(store, ixn.id) is None:
            sources.append(_source_json(ixn, ixn.id, ixn.created_at, ixn.updated_at))
            _write_sources(tx, store, ixn.destination_name, sources)
    for ixn in records:
        old.delete(tx, ixn.id)
    tx.touch("intentions")
    return OK


# -- reads -------------------------------------------------------------------------------------


def _index(store: StateStore, ws: WatchSet | None) -> int:
    store.watch(ws, "intentions", _KIND_KEY)
    return max(1, store.index_of("intentions"), store.fine_index(_KIND_KEY, "config-entries"))


def _all(store: StateStore) -> Iterable[Intention]:
    for entry in store.config.entries.by("kind", KIND).values():
        yield from _entry_intentions(entry)


def intention_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[Intention]]:
    """/v1/connect/intentions: every source of every entry in precedence order."""
    idx = _index(store, ws)
    return idx, sorted(_all(store), key=_sort_key)


def intention_get(
    store: StateStore, ws: WatchSet | None, intention_id: str
) -> tuple[int, Intention | None]:
    """/v1/connect/intentions/:id (the source with that ``LegacyID``)."""
    idx = _index(store, ws)
    found = _find_legacy(store, intention_id) if intention_id else None
    if found is None:
        return idx, None
    entry, i = found
    return idx, source_intention(entry, _sources(entry)[i])


def intention_exact(
    store: StateStore, ws: WatchSet | None, source: str, destination: str
) -> tuple[int, Intention | None]:
    """/v1/connect/intentions/exact?source=&destination= (no wildcard expansion)."""
    idx = _index(store, ws)
    entry = store.config.entries.get((KIND, destination))
    sources = _sources(entry)
    at = _find_name(sources, source)
    if entry is None or at is None:
        return idx, None
    return idx, source_intention(entry, sources[at])


def _matches(store: StateStore, by: str, name: str) -> list[Intention]:
    names = {name, WILDCARD}
    if by == "destination":
        table = store.config.entries
        found = [i for n in names for i in _entry_intentions(table.get((KIND, n)))]
    else:
        found = [i for i in _all(store) if i.source_name in names]
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


def legacy_count(store: StateStore) -> int:
    """How many records the old table still holds (the leader migrates them)."""
    return sum(1 for _ in store.intentions.intentions.values())
