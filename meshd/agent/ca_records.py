"""Registry CA root records to and from connect's ``rotation.Root``.

connect/ imports nothing of the registry (DESIGN.md, enforced by the import
contracts), so the CA leader reads ``registry.records.CARoot`` records,
hands ``connect.rotation.Root`` values to the rotation state machine, and
writes its answer back as records. The Raft indexes are not carried:
``CARootsSet`` stamps them when it is applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

from connect.rotation import Root
from registry.records import CARoot

_FIELDS = tuple(f.name for f in fields(Root))


def root_from_record(record: CARoot) -> Root:
    """The rotation view of a stored root (every field but the indexes)."""
    return Root(**{name: getattr(record, name) for name in _FIELDS})


def record_from_root(root: Root) -> CARoot:
    """A record to store for ``root`` (indexes 0: the FSM sets them)."""
    return CARoot(**{name: getattr(root, name) for name in _FIELDS})


def roots_from_records(records: Iterable[CARoot]) -> list[Root]:
    """``root_from_record`` over ``records``, in order."""
    return [root_from_record(r) for r in records]


def records_from_roots(roots: Iterable[Root]) -> tuple[CARoot, ...]:
    """``record_from_root`` over ``roots``, in order."""
    return tuple(record_from_root(r) for r in roots)
