"""The autopilot configuration: one replicated row (Consul's autopilot-config table).

Set through ``AutopilotConfigSet``; with ``cas`` only if the stored row's
ModifyIndex equals it (Consul's AutopilotCASConfig: with nothing stored,
only ``cas=0`` matches). Read back by ``autopilot_config``, which answers
None until a configuration was ever stored (the servers then use the
defaults of ``AutopilotConfig``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import ErrorCode
from ..records import AutopilotConfig
from ..results import OK, Result, failed
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from ..commands import AutopilotConfigSet
    from .store import StateStore, WriteTx

_KEY = "config"
INDEX = "autopilot-config"


class AutopilotTables:
    """The single autopilot configuration row."""

    def __init__(self) -> None:
        self.config: Table[AutopilotConfig] = Table(
            "autopilot_config", AutopilotConfig, lambda c: _KEY
        )

    def tables(self) -> list[Table[AutopilotConfig]]:
        """Tables in snapshot order."""
        return [self.config]


def set_config(store: StateStore, tx: WriteTx, cmd: AutopilotConfigSet) -> Result:
    """Store the configuration; with ``cas`` only if its ModifyIndex matches."""
    existing = store.autopilot.config.get(_KEY)
    current = existing.modify_index if existing else 0
    if cmd.cas is not None and cmd.cas != current:
        return failed(
            ErrorCode.CAS_CONFLICT, f"autopilot configuration index {current} != {cmd.cas}"
        )
    create = existing.create_index if existing else tx.index
    store.autopilot.config.put(tx, replace(cmd.config, create_index=create, modify_index=tx.index))
    tx.touch(INDEX)
    return OK


def autopilot_config(store: StateStore, ws: WatchSet | None) -> tuple[int, AutopilotConfig | None]:
    """The stored configuration (None if none was ever stored)."""
    store.watch(ws, INDEX)
    return max(1, store.index_of(INDEX)), store.autopilot.config.get(_KEY)
