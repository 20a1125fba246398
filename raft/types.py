"""Plain data shared by the Raft core, storage, transport and driver.

Everything here is immutable or treated as such once handed across a module
boundary, and everything can be encoded by ``raft.codec``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class EntryKind(enum.IntEnum):
    NORMAL = 0  # application command, handed to the FSM
    NOOP = 1  # appended by every new leader (Raft §8: commit an entry of its term)
    CONFIG = 2  # data is an encoded Configuration (single-server change, Raft §4.1)


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


class Suffrage(enum.IntEnum):
    VOTER = 0
    NONVOTER = 1


@dataclass(frozen=True, slots=True)
class Server:
    id: str
    address: str  # "host:port" of the server's Raft/RPC listener
    suffrage: Suffrage = Suffrage.VOTER


@dataclass(frozen=True, slots=True)
class Configuration:
    """The cluster membership; the latest one in the log is in effect (§4.1)."""

    servers: tuple[Server, ...] = ()
    # ``voters()`` computed once per configuration: the leader asks on every
    # commit and read round (a new frozenset each time was ~1% of its CPU per read).
    _voters: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)

    def voters(self) -> frozenset[str]:
        voters = self._voters
        if voters is None:
            voters = frozenset(s.id for s in self.servers if s.suffrage == Suffrage.VOTER)
            object.__setattr__(self, "_voters", voters)
        return voters

    def ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.servers)

    def get(self, server_id: str) -> Server | None:
        for s in self.servers:
            if s.id == server_id:
                return s
        return None

    def with_server(self, server: Server) -> Configuration:
        rest = tuple(s for s in self.servers if s.id != server.id)
        return Configuration(tuple(sorted((*rest, server), key=lambda s: s.id)))

    def without(self, server_id: str) -> Configuration:
        return Configuration(tuple(s for s in self.servers if s.id != server_id))


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    configuration: Configuration


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes


class MessageType(enum.IntEnum):
    APP = 1  # AppendEntries
    APP_RESP = 2
    VOTE = 3  # RequestVote
    VOTE_RESP = 4
    PREVOTE = 5  # §9.6 pre-vote
    PREVOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAP = 9  # InstallSnapshot; the transport streams snapshot.data in chunks
    TIMEOUT_NOW = 10  # leadership transfer (§3.10)


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft RPC or response. Unused fields keep their defaults.

    APP: ``index``/``log_term`` name the entry preceding ``entries``;
    ``commit`` is the leader's commit index.
    APP_RESP: ``index`` is the follower's last matching index on success;
    on ``reject``, ``reject_hint`` is its last index and ``log_term`` the term
    at that hint (fast backtracking, §5.3 optimisation).
    VOTE/PREVOTE: ``index``/``log_term`` describe the candidate's last entry;
    ``context == b"transfer"`` marks a campaign started by TIMEOUT_NOW, which
    bypasses leader stickiness.
    HEARTBEAT/HEARTBEAT_RESP: ``context`` carries a ReadIndex round id.
    SNAP: ``snapshot`` carries meta and, once delivered, the full data.
    """

    type: MessageType
    src: str
    dst: str
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: Snapshot | None = None


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the driver reports to observers."""

    role: Role
    leader: str | None
    term: int


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex read is safe once the FSM has applied ``index``."""

    index: int
    context: bytes


@dataclass(slots=True)
class Ready:
    """One batch of work for the driver, in this order:

    1. persist ``snapshot`` (if any), then ``entries`` (truncating any stored
       entries at or after ``entries[0].index``), then ``hard_state`` — with
       one fsync for all of it (group commit); a hard state whose commit
       index alone changed may wait for the next write (``HardStateWriter``);
    2. send ``messages``;
    3. restore the FSM from ``snapshot`` if set, then apply
       ``committed_entries`` in order;
    4. complete ``read_states`` once the FSM has applied their index;
    5. call ``core.advance(ready)``.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.soft_state
            or self.hard_state
            or self.entries
            or self.snapshot
            or self.messages
            or self.committed_entries
            or self.read_states
        )


class HardStateWriter:
    """Which hard state a driver must persist with each Ready.

    A change of the commit index alone is not written: the commit index is
    volatile state (thesis Figure 3.1; after a restart the leader tells it
    again, and a lone server recommits with its first entry as leader), and
    writing it on its own would cost an fsync per commit on every server. It
    is held back and goes to disk with the next entries or the next term or
    vote change. Term and vote are always written at once."""

    __slots__ = ("_held", "persisted")

    def __init__(self, persisted: HardState) -> None:
        self.persisted = persisted  # what the disk holds (the driver updates it after a write)
        self._held: HardState | None = None

    def for_ready(self, rd: Ready) -> HardState | None:
        hs = rd.hard_state
        if hs is None:
            if rd.entries and self._held is not None:
                hs, self._held = self._held, None
            return hs
        same = (hs.term, hs.vote) == (self.persisted.term, self.persisted.vote)
        if same and not rd.entries and rd.snapshot is None:
            self._held = hs
            return None
        self._held = None
        return hs
