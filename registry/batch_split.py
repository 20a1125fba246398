"""Which commands may share one ``ForwardedBatch`` entry (issue 18 review).

The commands of a batch share the entry's Raft index, so each write's
ModifyIndex is that index. Two rules keep that index honest:

* a command whose answer exposes indexes (a transaction's results, the
  ACL objects the API reads back with their CreateIndex/ModifyIndex) goes
  in an entry of its own: otherwise a client could be answered "k has
  ModifyIndex I" while k holds another client's value written at I, and
  its ``?cas=I`` would then overwrite a value it never saw;
* a KV key (or a tree a delete-tree removes) written earlier in the batch
  starts a new entry, so one index never names two values of one key.

``split_entries`` cuts a batch, in order, into the groups to propose as
entries (a group of one is proposed as the command itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from .commands import (
    ACLAuthMethodSet,
    ACLBindingRuleSet,
    ACLBootstrap,
    ACLPolicySet,
    ACLRoleSet,
    ACLTokenSet,
    Command,
    KVRequest,
    TxnRequest,
)

__all__ = ["ALONE", "split_entries"]

T = TypeVar("T")

# Commands whose answers expose the indexes they wrote at: always alone.
ALONE: frozenset[type[Command]] = frozenset(
    {
        TxnRequest,
        ACLTokenSet,
        ACLPolicySet,
        ACLRoleSet,
        ACLBootstrap,
        ACLAuthMethodSet,
        ACLBindingRuleSet,
    }
)


class _Written:
    """The KV keys and trees written so far in one group."""

    __slots__ = ("keys", "trees")

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.trees: list[str] = []

    def clashes(self, key: str, tree: bool) -> bool:
        if key in self.keys or any(key.startswith(t) for t in self.trees):
            return True
        if tree:
            return any(k.startswith(key) for k in self.keys) or any(
                t.startswith(key) for t in self.trees
            )
        return False

    def add(self, key: str, tree: bool) -> None:
        if tree:
            self.trees.append(key)
        else:
            self.keys.add(key)


def split_entries(items: Sequence[T], command: Callable[[T], Command]) -> list[list[T]]:
    """``items`` (whose command ``command(item)`` is) in order, cut into the
    groups that may each share one entry."""
    groups: list[list[T]] = []
    current: list[T] = []
    written = _Written()
    for item in items:
        cmd = command(item)
        alone = type(cmd) in ALONE
        kv = cmd if type(cmd) is KVRequest else None
        tree = kv is not None and kv.op == "delete-tree"
        if alone or (kv is not None and written.clashes(kv.key, tree)):
            if current:
                groups.append(current)
            current, written = [], _Written()
        if alone:
            groups.append([item])
            continue
        if kv is not None:
            written.add(kv.key, tree)
        current.append(item)
    if current:
        groups.append(current)
    return groups
