"""Connect CA tables: roots (with private signing keys) and the CA configuration.

The leader's CA manager reads the ``*_internal`` variants; everything that
serves the HTTP API must use ``ca_roots`` / ``ca_config``, which strip
private keys (Consul never returns ``SigningKey`` or the provider's
``PrivateKey`` from /v1/connect/ca/roots or /v1/connect/ca/configuration).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..commands import CAConfigSet, CARootsSet
from ..errors import ErrorCode
from ..records import CAConfig, CARoot, CARootList
from ..results import OK, Result, failed
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore, WriteTx

PRIVATE_CONFIG_KEYS = frozenset({"PrivateKey"})
_CONFIG_KEY = "config"


class CATables:
    """CA roots by ID and the single CA configuration row."""

    def __init__(self) -> None:
        self.roots: Table[CARoot] = Table("ca_roots", CARoot, lambda r: r.id)
        self.config: Table[CAConfig] = Table("ca_config", CAConfig, lambda c: _CONFIG_KEY)

    def tables(self) -> list[Table[CARoot] | Table[CAConfig]]:
        """Tables in snapshot order."""
        return [self.roots, self.config]


def set_roots(store: StateStore, tx: WriteTx, cmd: CARootsSet) -> Result:
    """Replace the root set if the roots table index equals ``cmd.cas`` (Consul CARootSetCAS)."""
    current = store.index_of("ca-roots")
    if current != cmd.cas:
        return failed(ErrorCode.CAS_CONFLICT, f"CA roots index {current} != {cmd.cas}")
    table = store.ca.roots
    keep = {r.id for r in cmd.roots}
    for old in list(table.values()):
        if old.id not in keep:
            table.delete(tx, old.id)
    for root in cmd.roots:
        existing = table.get(root.id)
        create = existing.create_index if existing else tx.index
        table.put(tx, replace(root, create_index=create, modify_index=tx.index))
    tx.touch("ca-roots")
    return OK


def set_config(store: StateStore, tx: WriteTx, cmd: CAConfigSet) -> Result:
    """Store the CA configuration; with ``cas`` only if its ModifyIndex matches."""
    existing = store.ca.config.get(_CONFIG_KEY)
    current = existing.modify_index if existing else 0
    if cmd.cas is not None and cmd.cas != current:
        return failed(ErrorCode.CAS_CONFLICT, f"CA configuration index {current} != {cmd.cas}")
    create = existing.create_index if existing else tx.index
    store.ca.config.put(tx, replace(cmd.config, create_index=create, modify_index=tx.index))
    tx.touch("ca-config")
    return OK


def _trust_domain(store: StateStore) -> str:
    config = store.ca.config.get(_CONFIG_KEY)
    return f"{config.cluster_id}.consul" if config and config.cluster_id else ""


def ca_roots_internal(store: StateStore, ws: WatchSet | None) -> tuple[int, CARootList]:
    """Every root with its private signing key: for the leader's CA code only."""
    store.watch(ws, "ca-roots", "ca-config")
    roots = tuple(store.ca.roots.sorted_records())
    active = next((r.id for r in roots if r.active), "")
    idx = max(1, store.index_of("ca-roots", "ca-config"))
    return idx, CARootList(active, _trust_domain(store), roots)


def ca_roots(store: StateStore, ws: WatchSet | None) -> tuple[int, CARootList]:
    """/v1/connect/ca/roots: the roots with ``signing_key`` blanked."""
    idx, found = ca_roots_internal(store, ws)
    public = tuple(replace(r, signing_key="") if r.signing_key else r for r in found.roots)
    return idx, replace(found, roots=public)


def ca_config_internal(store: StateStore, ws: WatchSet | None) -> tuple[int, CAConfig | None]:
    """The CA configuration including private material: for the leader's CA code only."""
    store.watch(ws, "ca-config")
    return max(1, store.index_of("ca-config")), store.ca.config.get(_CONFIG_KEY)


def ca_config(store: StateStore, ws: WatchSet | None) -> tuple[int, CAConfig | None]:
    """/v1/connect/ca/configuration: private keys and provider state removed."""
    idx, config = ca_config_internal(store, ws)
    if config is None:
        return idx, None
    public = {k: v for k, v in config.config.items() if k not in PRIVATE_CONFIG_KEYS}
    return idx, replace(config, config=public, state={})
