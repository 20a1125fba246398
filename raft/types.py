"""Plain data shared by the Raft core, storage, transport and driver.

Everything here is immutable or treated as such once handed across a module
boundary, and everything can be encoded by ``raft.codec``.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

_T = TypeVar("_T")


def _fast_init(cls: type[_T]) -> type[_T]:
    """Replace a frozen slotted dataclass's ``__init__`` with one that sets
    each slot through its descriptor: the generated one goes through
    ``object.__setattr__`` per field (a Message: ~0.95 -> ~0.55 us; the Raft
    path builds several per write on every server). Same signature, same
    defaults (taken from the fields), so ``cls(...)``, ``replace()`` and
    mypy's view are unchanged. Only for classes without ``__post_init__``
    and whose fields are all plain ``init`` fields."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or any(
        not f.init or f.kw_only is True or f.default_factory is not dataclasses.MISSING
        for f in fields
    ):
        raise TypeError(f"{cls.__name__}: _fast_init needs plain init fields")
    env: dict[str, Any] = {}
    params = []
    for f in fields:
        env[f"_s_{f.name}"] = getattr(cls, f.name).__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            env[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
    body = "".join(f"        _s_{f.name}(self, {f.name})\n" for f in fields)
    src = (
        f"def _make({', '.join(env)}):\n"
        f"    def __init__(self, {', '.join(params)}):\n{body}"
        "    return __init__\n"
    )
    ns: dict[str, Any] = {"__name__": cls.__module__}
    exec(src, ns)  # built from the class's own field names, as dataclasses does
    init = ns["_make"](**env)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses a method assignment
    return cls


class EntryKind(enum.IntEnum):
    NORMAL = 0  # application command, handed to the FSM
    NOOP = 1  # appended by every new leader (Raft §8: commit an entry of its term)
    CONFIG = 2  # data is an encoded Configuration (single-server change, Raft §4.1)


@_fast_init
@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


class Suffrage(enum.IntEnum):
    VOTER = 0
    NONVOTER = 1


@_fast_init
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


@_fast_init
@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@_fast_init
@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    configuration: Configuration


@_fast_init
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


@_fast_init
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


@_fast_init
@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the driver reports to observers."""

    role: Role
    leader: str | None
    term: int


@_fast_init
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
