"""Autopilot's server health (meshd/agent/autopilot.py), from the leader's
Raft status: reachable, within the trailing limit, and on the leader's term
(Consul's LastTerm rule)."""

from __future__ import annotations

from meshd.agent.autopilot import AutopilotSettings, HealthTracker
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


def test_a_follower_that_lost_its_log_is_not_healthy_until_it_holds_what_it_had() -> None:
    # Sent a snapshot at 35 and replicating again, 5 entries behind (within
    # MaxTrailingLogs), but it had acknowledged 40 before its data went: it
    # lacks entries it once served.
    b = health_of_b(PeerStatus("b", "x", Suffrage.VOTER, 35, 41, "replicate", 1, 7, 40))
    assert b["Healthy"] is False
    b = health_of_b(PeerStatus("b", "x", Suffrage.VOTER, 40, 41, "replicate", 1, 7, 0))
    assert b["Healthy"] is True


def test_a_follower_without_this_terms_entries_is_not_healthy() -> None:
    b = health_of_b(PeerStatus("b", "x", Suffrage.VOTER, 38, 39, "replicate", 1, 6))
    assert (b["Healthy"], b["LastTerm"]) == (False, 6)


def test_a_follower_being_probed_is_not_healthy() -> None:
    # Its connection broke (it may be restarting): the leader's view of its
    # log is no longer trusted until a probe is answered.
    b = health_of_b(PeerStatus("b", "x", Suffrage.VOTER, 40, 41, "probe", 1, 7))
    assert b["Healthy"] is False


def test_last_contact_threshold_comes_from_the_settings() -> None:
    b = PeerStatus("b", "x", Suffrage.VOTER, 40, 41, "replicate", 5, 7)  # 0.5 s ago
    for threshold, healthy in ((1.0, True), (0.2, False)):
        tracker = HealthTracker(settings=AutopilotSettings(last_contact_threshold=threshold))
        doc = tracker.evaluate(status(b), tick=0.1, now=0.0, names={}, version="1")
        assert [s["Healthy"] for s in doc["Servers"]] == [True, healthy]


def test_a_recovered_voter_counts_for_failure_tolerance_once_stable() -> None:
    three = (*SERVERS, Server("c", "10.0.0.3:8300"))
    me = PeerStatus("a", SERVERS[0].address, Suffrage.VOTER, 40, 41, "replicate", 0, 7)
    b = PeerStatus("b", "x", Suffrage.VOTER, 40, 41, "replicate", 1, 7)

    def st(c_state: str) -> CoreStatus:
        c = PeerStatus("c", "y", Suffrage.VOTER, 40, 41, c_state, 1, 7)
        return CoreStatus("a", Role.LEADER, 7, "a", 40, 40, 40, Configuration(three), (me, b, c))

    tracker = HealthTracker(settings=AutopilotSettings(server_stabilization_time=10.0))

    def tolerance(c_state: str, now: float) -> object:
        return tracker.evaluate(st(c_state), tick=0.1, now=now, names={}, version="1")[
            "FailureTolerance"
        ]

    assert tolerance("replicate", 0.0) == 1  # healthy when first seen: stable at once
    assert tolerance("probe", 1.0) == 0
    assert tolerance("replicate", 2.0) == 0  # healthy again, not yet stable
    assert tolerance("replicate", 11.0) == 0
    assert tolerance("replicate", 12.0) == 1
