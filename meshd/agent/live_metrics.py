"""The agent's live metrics: what an agent reports at every scrape (its local
services and checks, the process's runtime, and on a server Raft's state and
the catalog's counts), and the wiring of an agent's ``Metrics``.

The ``Metrics`` class itself (``meshd.metrics.prometheus``) knows nothing of
the agent; these functions read the agent for it.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from itertools import chain
from typing import TYPE_CHECKING, Any

import trio

from raft.errors import RaftError
from raft.types import Role
from registry.state.health import aggregated_status

from ..metrics.live import Live, LiveReader
from ..metrics.prometheus import Metrics

if TYPE_CHECKING:
    from raft.node import RaftNode
    from registry.records import HealthCheck
    from registry.state.store import StateStore

    from .agent import Agent

__all__ = [
    "CatalogCounts",
    "agent_live",
    "agent_metrics",
    "agent_reader",
    "catalog_live",
    "instrument",
    "metrics_for_agent",
    "raft_live",
]

_HEALTH = ("passing", "warning", "critical")
_LIVENESS = ("alive", "failed", "left")


def metrics_for_agent(agent: Agent) -> Metrics:
    """The metrics of ``agent``: its prefix, and live values read from it at
    scrape time (so it may be created before the agent runs)."""
    return Metrics(agent.config.telemetry.metrics_prefix, agent_reader(agent))


def instrument(metrics: Metrics, agent: Agent) -> None:
    """Record into ``metrics`` the events of what ``agent`` already runs: its
    Raft node, RPC server and anti-entropy. Idempotent; call it once they exist."""
    server = agent.server
    if server is not None:
        metrics.instrument_raft(server.node)
        server.rpc.metrics = metrics
    if agent.sync is not None:
        agent.sync.metrics = metrics


def agent_metrics(agent: Agent) -> Metrics:
    """``agent.metrics``, created and set on first use if the agent has none."""
    metrics = getattr(agent, "metrics", None)
    if not isinstance(metrics, Metrics):
        metrics = metrics_for_agent(agent)
        # Until Agent.__init__ creates it, the attribute is added here.
        setattr(agent, "metrics", metrics)  # noqa: B010
    return metrics


def agent_reader(agent: Agent) -> LiveReader:
    """What ``agent`` reports at every scrape: its own state, and on a server
    Raft's and the catalog's."""
    catalog = CatalogCounts()

    def read() -> list[Live]:
        out = agent_live(agent)
        traces = getattr(agent, "traces", None)
        if traces is not None:
            out += traces.live()
        server = agent.server
        if server is not None:
            out += raft_live(server.node)
            out += catalog.read(server.store)
        return out

    return read


def agent_live(agent: Agent) -> list[Live]:
    """The agent's local services and checks and the process's runtime."""
    local = agent.local
    critical = sum(1 for c in local.checks.values() if c.check.status == "critical")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = [
        Live("agent.services", "Services registered with this agent.", len(local.services)),
        Live("agent.checks", "Checks registered with this agent.", len(local.checks)),
        Live("agent.checks.critical", "Local checks that are critical.", critical),
        Live("runtime.uptime_seconds", "Seconds since start.", time.time() - agent.started_at),
        Live("runtime.max_rss_bytes", "Peak resident memory of the agent process.", rss),
    ]
    try:
        tasks = trio.lowlevel.current_statistics().tasks_living
    except RuntimeError:  # read outside trio (a test calling summary() directly)
        return out
    return [*out, Live("runtime.tasks", "Live trio tasks.", tasks)]


def raft_live(node: RaftNode) -> list[Live]:
    """Raft's role, term and indexes; nothing while the node is not running."""
    try:
        st = node.status()
    except RaftError:
        return []
    core = st.core
    role = core.role
    out = [
        Live(
            "raft.state",
            "1 for the Raft role this server is in, 0 for the others.",
            label="state",
            by={r.value: float(r == role) for r in Role},
        ),
        Live("raft.leader", "1 on the Raft leader.", float(role == Role.LEADER)),
        Live("raft.term", "Current Raft term.", core.term),
        Live("raft.commit_index", "Highest Raft index known committed.", core.commit),
        Live("raft.applied_index", "Highest Raft index applied to the registry.", st.applied),
        Live("raft.last_log_index", "Last index in this server's Raft log.", core.last_index),
        Live("raft.last_snapshot_index", "Index of the last Raft snapshot.", st.snapshot_index),
        Live("raft.fsm_pending", "Committed entries not yet applied.", core.commit - st.applied),
        Live("raft.peers", "Servers in the Raft configuration.", len(core.configuration.servers)),
        Live(
            "raft.leader_changes",
            "Times this server saw a new leader.",
            node.leader_changes,
            counter=True,
        ),
        Live(
            "raft.snapshots_installed",
            "Snapshots installed from a leader.",
            st.snapshots_installed,
            counter=True,
        ),
    ]
    if st.last_contact is not None:
        contact = "Seconds since the leader was last heard (0 on the leader)."
        out.append(Live("raft.last_contact_seconds", contact, st.last_contact))
    return out


class CatalogCounts:
    """Catalog gauges, recounted only when the catalog or liveness tables changed
    (a count walks every node, instance and check)."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._counts: list[Live] = []

    def read(self, store: StateStore) -> list[Live]:
        key = (id(store), store.index_of("nodes", "services", "checks", "liveness"))
        if key != self._key:
            self._counts = catalog_live(store)
            self._key = key
        return self._counts


def catalog_live(store: StateStore) -> list[Live]:
    """Nodes, services, instances (by health) and checks (by status) in ``store``."""
    cat = store.catalog
    by_service: Mapping[Any, Mapping[Any, HealthCheck]] = cat.checks.index_map("service")
    empty: Mapping[Any, HealthCheck] = {}
    nodes = dict.fromkeys(_HEALTH, 0.0)
    for node in cat.nodes.values():
        nodes[aggregated_status(by_service.get((node.node, ""), empty).values())] += 1
    instances = dict.fromkeys(_HEALTH, 0.0)
    for svc in cat.services.values():
        checks = chain(
            by_service.get((svc.node, ""), empty).values(),
            by_service.get((svc.node, svc.id), empty).values(),
        )
        instances[aggregated_status(checks)] += 1
    checks_by = dict.fromkeys(_HEALTH, 0.0)
    for status, bucket in cat.checks.index_map("status").items():
        checks_by[str(status)] = float(len(bucket))
    liveness = dict.fromkeys(_LIVENESS, 0.0)
    for record in store.liveness.records.values():
        liveness[record.status] = liveness.get(record.status, 0.0) + 1
    return [
        Live("catalog.nodes", "Nodes in the catalog.", len(cat.nodes)),
        Live(
            "catalog.services", "Service names in the catalog.", len(cat.services.index_map("name"))
        ),
        Live("catalog.service_instances", "Service instances in the catalog.", len(cat.services)),
        Live(
            "catalog.nodes_by_health",
            "Nodes by the worst status of their node checks.",
            label="status",
            by=nodes,
        ),
        Live(
            "catalog.service_instances_by_health",
            "Service instances by the worst status of their node's and their own checks.",
            label="status",
            by=instances,
        ),
        Live("catalog.checks", "Health checks by status.", label="status", by=checks_by),
        Live(
            "liveness.nodes", "Nodes by the leader's liveness verdict.", label="status", by=liveness
        ),
    ]
