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


def _clash(key: str, tree: bool, keys: set[str], trees: list[str]) -> bool:
    """Whether a write of ``key`` (a delete-tree of prefix ``key`` if
    ``tree``) touches a key or tree already written in the group."""
    if key in keys or (trees and any(key.startswith(t) for t in trees)):
        return True
    return tree and (any(k.startswith(key) for k in keys) or any(t.startswith(key) for t in trees))


def split_entries(items: Sequence[T], command: Callable[[T], Command]) -> list[list[T]]:
    """``items`` (whose command ``command(item)`` is) in order, cut into the
    groups that may each share one entry."""
    groups: list[list[T]] = []
    current: list[T] = []
    keys: set[str] = set()
    trees: list[str] = []
    for item in items:
        cmd = command(item)
        if type(cmd) is KVRequest:  # the common case: plain, no method calls
            key, tree = cmd.key, cmd.op == "delete-tree"
            if current and _clash(key, tree, keys, trees):
                groups.append(current)
                current, keys, trees = [], set(), []
            if tree:
                trees.append(key)
            else:
                keys.add(key)
            current.append(item)
        elif type(cmd) in ALONE:
            if current:
                groups.append(current)
                current, keys, trees = [], set(), []
            groups.append([item])
        else:
            current.append(item)
    if current:
        groups.append(current)
    return groups
