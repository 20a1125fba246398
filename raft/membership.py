"""Membership: which servers form the cluster, and changing that safely.

Single-server changes that take effect as soon as they are appended (thesis
§4.1), non-voters promoted once caught up (§4.2.1), a removed leader stepping
down once its removal commits (§4.2.2), leadership transfer with TimeoutNow
(§3.10), and bootstrapping the first configuration. Mixed into ``RaftCore``;
the attributes and core methods it relies on are declared below so that the
mixin type-checks on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import codec
from .errors import ConfigChangeError
from .log import RaftLog
from .progress import Progress
from .types import (
    Configuration,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Role,
    Server,
    SnapshotMeta,
    Suffrage,
)

if TYPE_CHECKING:
    from .core import CoreConfig

MT = MessageType


class Membership:
    """Configuration tracking and membership changes of a Raft server."""

    id: str
    term: int
    role: Role
    now: int
    log: RaftLog
    configuration: Configuration
    snapshot_meta: SnapshotMeta | None
    _conf_history: list[tuple[int, Configuration]]
    progress: dict[str, Progress]
    pending_conf_index: int
    promote_when_caught_up: set[str]
    transferee: str | None
    election_elapsed: int
    cfg: CoreConfig

    def _check_leader(self) -> None:
        raise NotImplementedError

    def _append(self, entries: list[Entry]) -> None:
        raise NotImplementedError

    def _bcast_append(self) -> None:
        raise NotImplementedError

    def _send_append(self, to: str, *, send_empty: bool = True) -> None:
        raise NotImplementedError

    def _send(self, msg: Message) -> None:
        raise NotImplementedError

    def _voters(self) -> frozenset[str]:
        raise NotImplementedError

    def _latest_configuration(self) -> Configuration:
        if self._conf_history:
            return self._conf_history[-1][1]
        if self.snapshot_meta is not None:
            return self.snapshot_meta.configuration
        return Configuration()

    def configuration_at(self, index: int) -> Configuration:
        conf = self.snapshot_meta.configuration if self.snapshot_meta else Configuration()
        for i, c in self._conf_history:
            if i <= index:
                conf = c
        return conf

    def _apply_configuration(self) -> None:
        """Make the latest configuration in the log take effect (§4.1)."""
        self.configuration = self._latest_configuration()
        if self.role != Role.LEADER:
            return
        ids = self.configuration.ids()
        for sid in ids - self.progress.keys():
            self.progress[sid] = Progress(
                self.log.last_index() + 1, self.cfg.max_inflight, self.now
            )
        for sid in list(self.progress):
            if sid not in ids and sid != self.id:
                del self.progress[sid]
        self.promote_when_caught_up &= ids

    def bootstrap(self, configuration: Configuration) -> None:
        """Write ``configuration`` as the first entry of an empty log (index 1,
        term 1), as every server of a new cluster does with the same servers.
        Raises ``ConfigChangeError`` if this server already has state."""
        if self.log.last_index() > 0 or self.snapshot_meta is not None:
            raise ConfigChangeError("already bootstrapped: the log is not empty")
        if not configuration.voters():
            raise ConfigChangeError("a bootstrap configuration needs at least one voter")
        self.term = max(self.term, 1)
        data = codec.encode_configuration(configuration)
        self.log.append([Entry(1, 1, EntryKind.CONFIG, data)])
        self._conf_history = [(1, configuration)]
        self.configuration = configuration

    def _conf_history_stale(self, appended: Sequence[Entry], truncated: bool = True) -> bool:
        """Whether an append added a configuration or truncated one away
        (``truncated``: whether it replaced any entry; entries that were only
        appended leave the history's entries where they were)."""
        if any(e.kind == EntryKind.CONFIG for e in appended):
            return True
        if not truncated:
            return False
        return any(
            self.log.term(i) is None
            or i > self.log.last_index()
            or self.log.entry(i).kind != EntryKind.CONFIG
            for i, _ in self._conf_history
            if i > self.log.offset
        )

    def _rebuild_conf_history(self) -> None:
        self._conf_history = [
            (e.index, codec.decode_configuration(e.data))
            for e in self.log.entries
            if e.kind == EntryKind.CONFIG
        ]
        self._apply_configuration()

    # -------------------------------------------------------------- membership

    def _change_configuration(self, conf: Configuration) -> int:
        self._check_leader()
        if self.pending_conf_index > self.log.commit:
            raise ConfigChangeError("another configuration change is still pending")
        if not conf.voters():
            raise ConfigChangeError("the change would leave no voter")
        index = self.log.last_index() + 1
        self._append([Entry(index, self.term, EntryKind.CONFIG, codec.encode_configuration(conf))])
        self._bcast_append()
        return index

    def add_nonvoter(self, server_id: str, address: str) -> int:
        """Add (or demote to) a non-voter; returns the configuration entry's index."""
        return self._change_configuration(
            self.configuration.with_server(Server(server_id, address, Suffrage.NONVOTER))
        )

    def add_voter(self, server_id: str, address: str) -> int:
        """Add a voter: as a non-voter first, promoted once caught up (§4.2.1).
        Returns the index of the first configuration entry written."""
        existing = self.configuration.get(server_id)
        if existing is not None and existing.suffrage == Suffrage.VOTER:
            if existing.address == address:
                return self.log.commit
            return self._change_configuration(
                self.configuration.with_server(Server(server_id, address))
            )
        index = self.add_nonvoter(server_id, address) if existing is None else self.log.last_index()
        self.promote_when_caught_up.add(server_id)
        pr = self.progress.get(server_id)
        if pr is not None:
            self._maybe_promote(server_id, pr)
        return index

    def _maybe_promote(self, server_id: str, pr: Progress) -> None:
        if pr.match < self.log.commit or self.pending_conf_index > self.log.commit:
            return
        if self.transferee is not None:
            return  # no configuration changes during a transfer; retried on commit
        srv = self.configuration.get(server_id)
        self.promote_when_caught_up.discard(server_id)
        if srv is None or srv.suffrage == Suffrage.VOTER:
            return
        try:
            self._change_configuration(self.configuration.with_server(Server(srv.id, srv.address)))
        except ConfigChangeError:
            self.promote_when_caught_up.add(server_id)

    def remove_server(self, server_id: str) -> int:
        """Remove a server (voter or not); returns the configuration entry's index."""
        if self.configuration.get(server_id) is None:
            raise ConfigChangeError(f"{server_id} is not in the configuration")
        self.promote_when_caught_up.discard(server_id)
        return self._change_configuration(self.configuration.without(server_id))

    def step_down(self) -> None:
        """This leader cannot make its log durable (a full disk): hand
        leadership to the most caught-up other voter (§3.10). A lone voter
        keeps leading (no one could take over); the driver refuses writes."""
        if self.role != Role.LEADER or self.transferee is not None:
            return
        if self._voters() - {self.id}:
            self.transfer_leadership()

    def transfer_leadership(self, target: str | None = None) -> str:
        """Hand leadership to ``target`` (or the most caught-up voter) with
        TimeoutNow (§3.10). Proposals are refused until it completes or an
        election timeout passes. Returns the chosen target."""
        self._check_leader()
        voters = sorted(self._voters() - {self.id})
        if target is None:
            if not voters:
                raise ConfigChangeError("no other voter to transfer leadership to")
            target = max(voters, key=lambda s: self.progress[s].match if s in self.progress else 0)
        if target not in voters:
            raise ConfigChangeError(f"{target} is not another voter")
        self.transferee = target
        self.election_elapsed = 0
        pr = self.progress[target]
        if pr.match == self.log.last_index():
            self._send(Message(MT.TIMEOUT_NOW, self.id, target, self.term))
        else:
            self._send_append(target)
        return target
