"""The Raft configuration and server health as ``/v1/operator`` shows them.

Pure functions of the leader's ``CoreStatus`` (no clock read here: ``now``
and the tick length come in), shaped like Consul's
``/v1/operator/raft/configuration`` and ``/v1/operator/autopilot/health``
(https://developer.hashicorp.com/consul/api-docs/operator/autopilot).

A server is healthy when the leader heard from it within
``last_contact_threshold``, replicates to it (rather than probing it, as
after its connection broke, or sending it a snapshot), its log is within
``max_trailing_logs`` of the leader's last index and its last entry is of
the leader's term (Consul's ``LastTerm`` rule). So a server restarted with
an empty data directory is not healthy until it holds the leader's state.
Consul's default threshold is 200 ms; meshd's leader measures contact in
Raft ticks (100-500 ms), so its default is 1 s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raft.core import CoreStatus
from raft.types import Configuration, Suffrage
from registry.records import AutopilotConfig
from registry.shapes import rfc3339

from ..durations import format_duration
from ..version import RAFT_PROTOCOL

__all__ = ["AutopilotSettings", "HealthTracker", "autopilot_json", "raft_configuration_json"]


@dataclass(frozen=True)
class AutopilotSettings:
    """What the health rule uses of the replicated ``AutopilotConfig``."""

    last_contact_threshold: float = 1.0
    max_trailing_logs: int = 250
    server_stabilization_time: float = 10.0

    @classmethod
    def from_config(cls, config: AutopilotConfig | None) -> AutopilotSettings:
        c = config if config is not None else AutopilotConfig()
        return cls(c.last_contact_threshold, c.max_trailing_logs, c.server_stabilization_time)


def autopilot_json(c: AutopilotConfig) -> dict[str, Any]:
    """``/v1/operator/autopilot/configuration``: Consul's shape, durations as strings."""
    return {
        "CleanupDeadServers": c.cleanup_dead_servers,
        "LastContactThreshold": format_duration(c.last_contact_threshold),
        "MaxTrailingLogs": c.max_trailing_logs,
        "MinQuorum": c.min_quorum,
        "ServerStabilizationTime": format_duration(c.server_stabilization_time),
        "RedundancyZoneTag": c.redundancy_zone_tag,
        "DisableUpgradeMigration": c.disable_upgrade_migration,
        "UpgradeVersionTag": c.upgrade_version_tag,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


def raft_configuration_json(
    conf: Configuration, leader_id: str | None, names: Mapping[str, str], index: int
) -> dict[str, Any]:
    """``{"Servers": [...], "Index": n}`` with Consul's field names."""
    return {
        "Servers": [
            {
                "ID": s.id,
                "Node": names.get(s.id, s.id),
                "Address": s.address,
                "Leader": s.id == leader_id,
                "ProtocolVersion": str(RAFT_PROTOCOL),
                "Voter": s.suffrage == Suffrage.VOTER,
            }
            for s in conf.servers
        ],
        "Index": index,
    }


def quorum(voters: int) -> int:
    return voters // 2 + 1


@dataclass
class HealthTracker:
    """Evaluates server health on the leader and remembers since when each
    server has been in its current state (``StableSince``)."""

    settings: AutopilotSettings = field(default_factory=AutopilotSettings)
    _since: dict[str, tuple[bool, float]] = field(default_factory=dict)
    # Servers healthy since the leader first saw them: stable at once.
    _settled: set[str] = field(default_factory=set)

    def _stable_since(self, server_id: str, healthy: bool, now: float) -> float:
        prev = self._since.get(server_id)
        if prev is None and healthy:
            self._settled.add(server_id)
        if not healthy:
            self._settled.discard(server_id)
        if prev is None or prev[0] != healthy:
            self._since[server_id] = (healthy, now)
            return now
        return prev[1]

    def _stable(self, server_id: str, now: float) -> bool:
        """Healthy for ``server_stabilization_time`` (Consul's isStable), or
        since the leader first saw it (a fresh leader trusts its cluster)."""
        healthy, since = self._since[server_id]
        if not healthy:
            return False
        return server_id in self._settled or now - since >= self.settings.server_stabilization_time

    def evaluate(
        self,
        st: CoreStatus,
        *,
        tick: float,
        now: float,
        names: Mapping[str, str],
        version: str,
    ) -> dict[str, Any]:
        """The autopilot health document for the leader's status ``st``."""
        servers = []
        for peer in st.peers:
            is_self = peer.id == st.id
            contact = 0.0 if is_self else max(peer.ticks_since_ack, 0) * tick
            reachable = is_self or (
                peer.ticks_since_ack >= 0 and contact <= self.settings.last_contact_threshold
            )
            match = st.last_index if is_self else peer.match
            last_term = st.term if is_self else peer.match_term
            # A server the leader is probing (just back, or its log end is
            # unknown) or sending a snapshot is not caught up, whatever its
            # last acknowledged index says.
            # One that lost its state must also hold again everything it had
            # acknowledged: trailing by a few entries after a snapshot, it
            # lacks data it served before.
            replicating = is_self or peer.state == "replicate"
            caught_up = (
                replicating
                and peer.regaining == 0
                and st.last_index - match <= self.settings.max_trailing_logs
                and last_term == st.term
            )
            healthy = reachable and caught_up
            servers.append(
                {
                    "ID": peer.id,
                    "Name": names.get(peer.id, peer.id),
                    "Address": peer.address,
                    "SerfStatus": "alive" if reachable else "failed",
                    "Version": version,
                    "Leader": is_self,
                    "LastContact": format_duration(contact),
                    "LastTerm": last_term,
                    "LastIndex": match,
                    "Healthy": healthy,
                    "Voter": peer.suffrage == Suffrage.VOTER,
                    "StableSince": rfc3339(self._stable_since(peer.id, healthy, now)),
                }
            )
        for gone in set(self._since) - {s["ID"] for s in servers}:
            del self._since[gone]
            self._settled.discard(gone)
        voters = [s for s in servers if s["Voter"]]
        # A voter that just recovered counts towards the failure tolerance
        # only once stable, so a flapping server does not inflate it.
        healthy_voters = sum(1 for s in voters if self._stable(str(s["ID"]), now))
        return {
            "Healthy": all(s["Healthy"] for s in servers),
            "FailureTolerance": max(healthy_voters - quorum(len(voters)), 0),
            "Servers": servers,
        }
