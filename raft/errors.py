"""Errors raised by raft/.

Expected conditions are named errors callers can act on; broken invariants
raise ``RaftInvariantError`` and should crash the process (the log or the
state machine can no longer be trusted).
"""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error raft/ raises on purpose."""


class NotLeaderError(RaftError):
    """This server is not the leader; ``leader_id``/``leader_addr`` name the one
    it believes leads (both ``None`` during an election)."""

    def __init__(self, leader_id: str | None = None, leader_addr: str | None = None) -> None:
        self.leader_id = leader_id
        self.leader_addr = leader_addr
        hint = f" (leader is {leader_id} at {leader_addr})" if leader_id else " (no known leader)"
        super().__init__("not the leader" + hint)


class ProposalDroppedError(RaftError):
    """The proposal was not accepted: leadership was lost before it reached
    the log, a transfer is in progress, or another leader's entry committed
    in its place. Raised as this class exactly, it was certainly not applied
    and may be sent again; its subclass ``LeadershipLostError`` is the
    ambiguous case."""


class LeadershipLostError(ProposalDroppedError):
    """Leadership was lost while the proposal or read was in flight. For a
    proposal: it was in the log already and may still commit under the next
    leader, so sending it again may apply it twice (hashicorp/raft's
    ``ErrLeadershipLost``, which Consul returns to the caller instead of
    retrying)."""


class CompactedError(RaftError):
    """The requested log index was compacted into a snapshot."""


class ConfigChangeError(RaftError):
    """A membership change was refused (another change pending, unknown
    server, or it would leave the cluster without a voter)."""


class StorageError(RaftError):
    """Durable storage failed or holds data it cannot trust."""


class StorageUnavailableError(StorageError):
    """A write failed for a reason that can pass (the disk is full, an I/O
    error): nothing of it was stored, and the same write may succeed later."""


class SnapshotCorruptError(StorageError):
    """A snapshot file failed its checksum or could not be decoded."""


class TransportError(RaftError):
    """A peer could not be reached or the connection was refused."""


class PeerRejectedError(TransportError):
    """A peer's TLS identity did not satisfy the cluster's requirements."""


class RaftInvariantError(RaftError):
    """A safety invariant was broken; the node must stop."""
