"""Autopilot's server health (meshd/agent/autopilot.py), from the leader's
Raft status: reachable, within the trailing limit, and on the leader's term
(Consul's LastTerm rule)."""

from __future__ import annotations

from meshd.agent.autopilot import HealthTracker
from raft.core import CoreStatus, PeerStatus
from raft.types import Configuration, Role, Server, Suffrage

SERVERS = (Server("a", "10.0.0.1:8300"), Server("b", "10.0.0.2:8300"))


def status(peer_b: PeerStatus) -> CoreStatus:
    me = PeerStatus("a", SERVERS[0].address, Suffrage.VOTER, 40, 41, "replicate", 0, 7)
    return CoreStatus("a", Role.LEADER, 7, "a", 40, 40, 40, Configuration(SERVERS), (me, peer_b))


def health_of_b(peer_b: PeerStatus) -> dict[str, object]:
    doc = HealthTracker().evaluate(status(peer_b), tick=0.1, now=0.0, names={}, version="1")
    [b] = [s for s in doc["Servers"] if s["ID"] == "b"]
    return b


def test_a_caught_up_follower_on_the_leaders_term_is_healthy() -> None:
    b = health_of_b(PeerStatus("b", "x", Suffrage.VOTER, 40, 41, "replicate", 1, 7))
    assert (b["Healthy"], b["LastIndex"], b["LastTerm"]) == (True, 40, 7)


def test_a_follower_that_lost_its_log_is_not_healthy_though_within_trailing_logs() -> None:
    # Restarted with an empty data directory: the leader probes it from index
    # 0 and sends a snapshot; 40 entries behind is within MaxTrailingLogs.
    b = health_of_b(PeerStatus("b", "x", Suffrage.VOTER, 0, 1, "snapshot", 1, 0))
    assert (b["Healthy"], b["LastIndex"], b["LastTerm"]) == (False, 0, 0)


def test_a_follower_without_this_terms_entries_is_not_healthy() -> None:
    b = health_of_b(PeerStatus("b", "x", Suffrage.VOTER, 38, 39, "replicate", 1, 6))
    assert (b["Healthy"], b["LastTerm"]) == (False, 6)


def test_a_follower_being_probed_is_not_healthy() -> None:
    # Its connection broke (it may be restarting): the leader's view of its
    # log is no longer trusted until a probe is answered.
    b = health_of_b(PeerStatus("b", "x", Suffrage.VOTER, 40, 41, "probe", 1, 7))
    assert b["Healthy"] is False
