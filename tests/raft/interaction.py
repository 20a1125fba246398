"""Data-driven interaction tests for the Raft core, after etcd-io/raft's.

A script is a list of blocks::

    # comment
    command arg key=value
    ----
    expected output (one or more lines, may be empty)

Blocks are separated by a blank line. Run with ``REWRITE=1`` to write the
actual output back into the file (review the diff before committing).

Nodes are named ``1``..``N``; every node has durable state in memory that
survives ``crash``/``restart`` (volatile state is lost), and a list FSM.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from raft.core import CoreConfig, InitialState, RaftCore
from raft.types import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    Ready,
    Server,
    Snapshot,
    Suffrage,
)


@dataclass
class Durable:
    hard: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None

    def save(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.snapshot = rd.snapshot
            self.entries = []
        if rd.entries:
            first = rd.entries[0].index
            self.entries = [e for e in self.entries if e.index < first] + list(rd.entries)
        if rd.hard_state is not None:
            self.hard = rd.hard_state

    def initial(self) -> InitialState:
        meta = self.snapshot.meta if self.snapshot else None
        entries = [e for e in self.entries if meta is None or e.index > meta.index]
        return InitialState(self.hard, meta, entries)


@dataclass
class Node:
    core: RaftCore
    durable: Durable
    applied: list[str] = field(default_factory=list)
    applied_index: int = 0
    reads: list[str] = field(default_factory=list)


def fmt_entry(e: Entry) -> str:
    if e.kind == EntryKind.NORMAL:
        return f'{e.term}/{e.index} "{e.data.decode()}"'
    if e.kind == EntryKind.NOOP:
        return f"{e.term}/{e.index} noop"
    return f"{e.term}/{e.index} conf"


def fmt_msg(m: Message) -> str:
    parts = [f"{m.src}->{m.dst} {m.type.name} term={m.term}"]
    if m.type in (MessageType.APP, MessageType.VOTE, MessageType.PREVOTE):
        parts.append(f"log={m.log_term}/{m.index}")
    elif m.index and m.type != MessageType.HEARTBEAT and m.type != MessageType.HEARTBEAT_RESP:
        parts.append(f"index={m.index}")
    if m.commit:
        parts.append(f"commit={m.commit}")
    if m.reject:
        parts.append(f"REJECT hint={m.reject_hint}/{m.log_term}")
    if m.entries:
        parts.append("[" + ", ".join(fmt_entry(e) for e in m.entries) + "]")
    if m.context:
        parts.append(f"ctx={m.context.decode()}")
    if m.snapshot is not None:
        parts.append(f"snap={m.snapshot.meta.term}/{m.snapshot.meta.index}")
    return " ".join(parts)


class Cluster:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.crashed: dict[str, Durable] = {}
        self.inbox: dict[str, list[Message]] = {}
        self.cut: set[tuple[str, str]] = set()
        self.opts: dict[str, str] = {}
        self.out: list[str] = []

    # -- helpers ---------------------------------------------------------

    def _core(self, nid: str, durable: Durable, bootstrap: Configuration | None) -> RaftCore:
        cfg = CoreConfig(
            id=nid,
            election_ticks=int(self.opts.get("election", "10")),
            heartbeat_ticks=1,
            max_inflight=int(self.opts.get("inflight", "256")),
            pre_vote=self.opts.get("prevote", "true") == "true",
            check_quorum=self.opts.get("checkquorum", "true") == "true",
        )
        return RaftCore(cfg, random.Random(int(nid)), durable.initial(), bootstrap=bootstrap)

    def handle_ready(self, nid: str) -> None:
        node = self.nodes[nid]
        if not node.core.has_ready():
            return
        rd = node.core.ready()
        node.durable.save(rd)
        if rd.soft_state is not None:
            s = rd.soft_state
            self.out.append(f"{nid}: {s.role.value} term={s.term} leader={s.leader}")
        for m in rd.messages:
            if m.type == MessageType.SNAP and m.snapshot is not None and not m.snapshot.data:
                src = node.durable.snapshot
                assert src is not None, "leader asked to send a snapshot it does not have"
                m = Message(m.type, m.src, m.dst, m.term, snapshot=src)
            if (m.src, m.dst) in self.cut or m.dst not in self.nodes:
                continue  # partitions and crashes lose messages; they do not delay them
            self.inbox.setdefault(m.dst, []).append(m)
        if rd.snapshot is not None:
            node.applied = rd.snapshot.data.decode().split(",") if rd.snapshot.data else []
            node.applied_index = rd.snapshot.meta.index
        for e in rd.committed_entries:
            if e.kind == EntryKind.NORMAL:
                node.applied.append(e.data.decode())
            node.applied_index = e.index
        for r in rd.read_states:
            self.out.append(f"{nid}: read ready ctx={r.context.decode()} index={r.index}")
        node.core.advance(rd)

    def deliver(self, nid: str, drop: set[str] | None = None) -> int:
        msgs = self.inbox.pop(nid, [])
        n = 0
        for m in msgs:
            if drop and m.src in drop:
                continue
            if (m.src, m.dst) in self.cut or m.dst not in self.nodes:
                continue
            self.out.append(fmt_msg(m))
            self.nodes[nid].core.step(m)
            n += 1
        return n

    def stabilize(self, ids: list[str] | None = None) -> None:
        for _ in range(1000):
            busy = False
            for nid in sorted(self.nodes):
                if ids and nid not in ids:
                    continue
                if self.nodes[nid].core.has_ready():
                    busy = True
                    self.handle_ready(nid)
            for nid in sorted(self.nodes):
                if ids and nid not in ids:
                    continue
                if self.inbox.get(nid) and self.deliver(nid):
                    busy = True
                elif nid in self.inbox:
                    self.inbox.pop(nid)
            if not busy:
                return
        raise AssertionError("stabilize did not converge")

    # -- commands --------------------------------------------------------

    def run(self, cmd: str, args: list[str], kv: dict[str, str]) -> str:
        self.out = []
        getattr(self, "cmd_" + cmd.replace("-", "_"))(args, kv)
        return "\n".join(self.out)

    def cmd_add_nodes(self, args: list[str], kv: dict[str, str]) -> None:
        self.opts.update(kv)
        n = int(args[0])
        voters = [str(i) for i in range(1, n + 1)]
        conf = Configuration(tuple(Server(v, f"n{v}:8300") for v in voters))
        for v in voters:
            d = Durable()
            self.nodes[v] = Node(self._core(v, d, conf), d)
        self.out.append(f"added {n} nodes")

    def cmd_add_blank(self, args: list[str], kv: dict[str, str]) -> None:
        """A server with no state, waiting to be added (no bootstrap)."""
        nid = args[0]
        d = Durable()
        self.nodes[nid] = Node(self._core(nid, d, None), d)

    def cmd_age(self, args: list[str], kv: dict[str, str]) -> None:
        """The servers have been up for ``n`` ticks without their election
        timers firing: past the quiet period a freshly started server keeps."""
        for nid in args or sorted(self.nodes):
            self.nodes[nid].core.now += int(kv.get("n", "10"))

    def cmd_campaign(self, args: list[str], kv: dict[str, str]) -> None:
        self.nodes[args[0]].core.campaign()

    def cmd_leader_lost(self, args: list[str], kv: dict[str, str]) -> None:
        """``leader-lost <node> <peer>``: node's transport saw peer's connection end."""
        was = self.nodes[args[0]].core.leader_unreachable(args[1])
        self.out.append(f"{args[0]}: {args[1]} was {'the' if was else 'not the'} leader")

    def cmd_tick(self, args: list[str], kv: dict[str, str]) -> None:
        count = int(kv.get("n", "1"))
        if kv.get("batch") == "true":
            # A driver whose loop stalled: all the stall's ticks in one call.
            for nid in args or sorted(self.nodes):
                self.nodes[nid].core.tick(count)
            return
        for _ in range(count):
            for nid in args or sorted(self.nodes):
                self.nodes[nid].core.tick()
            if kv.get("deliver") == "true":
                self.stabilize(args or None)

    def cmd_propose(self, args: list[str], kv: dict[str, str]) -> None:
        try:
            idx, term = self.nodes[args[0]].core.propose(args[1].encode())
            self.out.append(f"proposed at {term}/{idx}")
        except Exception as exc:
            self.out.append(f"error: {type(exc).__name__}: {exc}")

    def cmd_stabilize(self, args: list[str], kv: dict[str, str]) -> None:
        self.stabilize(args or None)

    def cmd_process_ready(self, args: list[str], kv: dict[str, str]) -> None:
        for nid in args:
            self.handle_ready(nid)

    def cmd_deliver_msgs(self, args: list[str], kv: dict[str, str]) -> None:
        drop = set(kv["drop"].split(",")) if "drop" in kv else None
        for nid in args:
            self.deliver(nid, drop)

    def cmd_drop_msgs(self, args: list[str], kv: dict[str, str]) -> None:
        for nid in args:
            n = len(self.inbox.pop(nid, []))
            self.out.append(f"dropped {n} messages to {nid}")

    def cmd_partition(self, args: list[str], kv: dict[str, str]) -> None:
        groups = [set(g.split(",")) for g in args]
        for a in self.nodes:
            for b in self.nodes:
                ga = next((i for i, g in enumerate(groups) if a in g), -1)
                gb = next((i for i, g in enumerate(groups) if b in g), -1)
                if ga != gb:
                    self.cut.add((a, b))

    def cmd_heal(self, args: list[str], kv: dict[str, str]) -> None:
        self.cut.clear()

    def cmd_status(self, args: list[str], kv: dict[str, str]) -> None:
        for nid in args or sorted(self.nodes):
            st = self.nodes[nid].core.status()
            peers = " ".join(
                f"{p.id}{'' if p.suffrage == Suffrage.VOTER else '(nv)'}:{p.match}/{p.state}"
                + (f"<{p.regaining}" if p.regaining else "")
                for p in st.peers
            )
            self.out.append(
                f"{nid}: {st.role.value} term={st.term} leader={st.leader} commit={st.commit} "
                f"last={st.last_index} peers=[{peers}]"
            )

    def cmd_applied(self, args: list[str], kv: dict[str, str]) -> None:
        for nid in args or sorted(self.nodes):
            n = self.nodes[nid]
            self.out.append(f"{nid}: {n.applied_index} [{','.join(n.applied)}]")

    def cmd_log(self, args: list[str], kv: dict[str, str]) -> None:
        for nid in args:
            log = self.nodes[nid].core.log
            entries = ", ".join(fmt_entry(e) for e in log.entries)
            self.out.append(f"{nid}: offset={log.offset} [{entries}]")

    def cmd_read_index(self, args: list[str], kv: dict[str, str]) -> None:
        try:
            self.nodes[args[0]].core.read_index(args[1].encode())
        except Exception as exc:
            self.out.append(f"error: {type(exc).__name__}: {exc}")

    def cmd_lease(self, args: list[str], kv: dict[str, str]) -> None:
        self.out.append(f"{args[0]}: lease {self.nodes[args[0]].core.lease_valid()}")

    def cmd_add_voter(self, args: list[str], kv: dict[str, str]) -> None:
        self._membership(lambda c: c.add_voter(args[1], f"n{args[1]}:8300"), args[0])

    def cmd_add_nonvoter(self, args: list[str], kv: dict[str, str]) -> None:
        self._membership(lambda c: c.add_nonvoter(args[1], f"n{args[1]}:8300"), args[0])

    def cmd_remove(self, args: list[str], kv: dict[str, str]) -> None:
        self._membership(lambda c: c.remove_server(args[1]), args[0])

    def cmd_transfer_leader(self, args: list[str], kv: dict[str, str]) -> None:
        target = args[1] if len(args) > 1 else None
        self._membership(lambda c: c.transfer_leadership(target), args[0])

    def _membership(self, fn: object, nid: str) -> None:
        try:
            res = fn(self.nodes[nid].core)  # type: ignore[operator]
            self.out.append(f"ok: {res}")
        except Exception as exc:
            self.out.append(f"error: {type(exc).__name__}: {exc}")

    def cmd_snapshot(self, args: list[str], kv: dict[str, str]) -> None:
        """Take an FSM snapshot at the node's applied index and compact."""
        nid = args[0]
        node = self.nodes[nid]
        trailing = int(kv.get("trailing", "0"))
        meta = node.core.compact(node.applied_index, trailing)
        node.durable.snapshot = Snapshot(meta, ",".join(node.applied).encode())
        node.durable.entries = [e for e in node.durable.entries if e.index > meta.index - trailing]
        self.out.append(f"{nid}: snapshot at {meta.term}/{meta.index}")

    def cmd_crash(self, args: list[str], kv: dict[str, str]) -> None:
        for nid in args:
            self.crashed[nid] = self.nodes.pop(nid).durable
            self.inbox.pop(nid, None)

    def cmd_wipe(self, args: list[str], kv: dict[str, str]) -> None:
        """``wipe <node>``: a crashed node's data directory is emptied (it
        restarts with no log, term, vote or snapshot)."""
        for nid in args:
            self.crashed[nid] = Durable()

    def cmd_restart(self, args: list[str], kv: dict[str, str]) -> None:
        for nid in args:
            d = self.crashed.pop(nid)
            node = Node(self._core(nid, d, None), d)
            if d.snapshot is not None:
                node.applied = d.snapshot.data.decode().split(",") if d.snapshot.data else []
                node.applied_index = d.snapshot.meta.index
            self.nodes[nid] = node


def parse(path: Path) -> list[tuple[str, list[str], str]]:
    """Blocks of (command line, its comment lines, expected output)."""
    blocks: list[tuple[str, list[str], str]] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        comments: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
            if lines[i].startswith("#"):
                comments.append(lines[i])
            i += 1
        if i >= len(lines):
            break
        cmd = lines[i]
        i += 1
        assert i < len(lines) and lines[i] == "----", f"{path}:{i}: expected ----"
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i] != "":
            out.append(lines[i])
            i += 1
        blocks.append((cmd, comments, "\n".join(out)))
    return blocks


def run_file(path: Path, rewrite: bool) -> list[tuple[str, str, str]]:
    """Run a script; returns mismatches (command, expected, actual)."""
    cluster = Cluster()
    mismatches = []
    rendered: list[str] = []
    for cmd, comments, expected in parse(path):
        words = cmd.split()
        args = [w for w in words[1:] if "=" not in w]
        kv = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        actual = cluster.run(words[0], args, kv)
        if actual != expected:
            mismatches.append((cmd, expected, actual))
        rendered.append("\n".join([*comments, cmd, "----", actual]).rstrip("\n"))
    if rewrite:
        path.write_text("\n\n".join(rendered) + "\n")
    return mismatches
