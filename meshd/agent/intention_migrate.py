"""The leader moves pre-1.9 intentions into service-intentions config entries.

Consul's leader runs ``legacyIntentionMigration`` once after an upgrade:
every intention of the old table becomes a source (with its ``LegacyID``)
of its destination's service-intentions entry, and the old table is
emptied. meshd does the same with one ``IntentionsMigrate`` command, applied
atomically by the FSM; records that arrive later (a snapshot restored from
an older meshd) are migrated on the next pass. Applying it twice is harmless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from registry.commands import IntentionsMigrate
from registry.state.intentions import legacy_count

from ..errors import MeshdError

if TYPE_CHECKING:
    from .server import MeshServer


class IntentionMigrator:
    """Runs on the leader (``MeshServer.while_leader``)."""

    def __init__(self, server: MeshServer) -> None:
        self.server = server
        self._lock = trio.Lock()

    async def step(self) -> None:
        if not legacy_count(self.server.store):
            return
        result = await self.server.write(IntentionsMigrate())
        if not result.ok:
            raise MeshdError(f"intention migration refused: {result.message}")

    async def run(self) -> None:
        await self.server.while_leader(
            self.step, event="intention_migration", expected=(MeshdError,), lock=self._lock
        )
