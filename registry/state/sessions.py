"""Sessions table: create, destroy/invalidate, reads.

Follows Consul's state/session.go and /v1/session docs. A session is bound
to a node and to checks on it (NodeChecks default ``["serfHealth"]``,
ServiceChecks); it is invalidated when destroyed (by the user, or by the
leader when its TTL expires: the FSM only stores the TTL), when its node is
deregistered, or when one of its checks goes critical or is deleted.
Invalidation releases (``behavior: release``) or deletes (``delete``) the
keys it holds and starts their lock-delay, measured from the command's
``now``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..commands import SessionCreate
from ..errors import ErrorCode
from ..records import CRITICAL, Session
from ..results import OK, Result, failed
from .kv import kv_delete_key, kv_release_held, set_lock_delay
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore, WriteTx


class SessionTables:
    """Sessions by ID, by node and by bound check ``(node, check_id)``."""

    def __init__(self) -> None:
        self.sessions: Table[Session] = Table(
            "sessions",
            Session,
            lambda s: s.id,
            {
                "node": lambda s: (s.node,),
                "check": lambda s: tuple((s.node, c) for c in s.checks),
            },
        )

    def tables(self) -> list[Table[Session]]:
        """Tables in snapshot order."""
        return [self.sessions]


def create_session(store: StateStore, tx: WriteTx, cmd: SessionCreate) -> Result:
    """Create a session; the result's value is its ID."""
    if store.sessions.sessions.get(cmd.id) is not None:
        return failed(ErrorCode.CONFLICT, f"session {cmd.id!r} already exists")
    if store.catalog.nodes.get(cmd.node) is None:
        return failed(ErrorCode.NOT_FOUND, f"Missing node registration for {cmd.node!r}")
    for check_id in (*cmd.node_checks, *cmd.service_checks):
        check = store.catalog.checks.get((cmd.node, check_id))
        if check is None:
            return failed(ErrorCode.NOT_FOUND, f"Missing check '{check_id}' registration")
        if check.status == CRITICAL:
            return failed(ErrorCode.INVALID, f"Check '{check_id}' is in critical state")
    session = Session(
        id=cmd.id,
        name=cmd.name,
        node=cmd.node,
        node_checks=cmd.node_checks,
        service_checks=cmd.service_checks,
        lock_delay=cmd.lock_delay,
        behavior=cmd.behavior,
        ttl=cmd.ttl,
        create_time=cmd.now,
        create_index=tx.index,
        modify_index=tx.index,
    )
    store.sessions.sessions.put(tx, session)
    tx.touch("sessions", "session:" + session.id, "session-node:" + session.node)
    return Result(True, session.id)


def invalidate_session(store: StateStore, tx: WriteTx, session_id: str) -> Result:
    """Destroy a session: release or delete its locks, start their lock-delay.

    Destroying an unknown session is a no-op, as in Consul.
    """
    session = store.sessions.sessions.get(session_id)
    if session is None:
        return OK
    held = list(store.kv.entries.by("session", session_id).values())
    for entry in held:
        if session.behavior == "delete":
            kv_delete_key(store, tx, entry.key)
        else:
            kv_release_held(store, tx, entry)
        if session.lock_delay > 0:
            set_lock_delay(store, tx, entry.key, tx.now + session.lock_delay)
    store.sessions.sessions.delete(tx, session_id)
    tx.touch("sessions", "session:" + session_id, "session-node:" + session.node)
    tx.drop("session:" + session_id)
    if not store.sessions.sessions.by("node", session.node):
        tx.drop("session-node:" + session.node)
    return OK


def invalidate_check_sessions(store: StateStore, tx: WriteTx, node: str, check_id: str) -> None:
    """Invalidate every session bound to check ``check_id`` on ``node``."""
    for session in list(store.sessions.sessions.by("check", (node, check_id)).values()):
        invalidate_session(store, tx, session.id)


def invalidate_node_sessions(store: StateStore, tx: WriteTx, node: str) -> None:
    """Invalidate every session of ``node`` (the node is being deregistered)."""
    for session in list(store.sessions.sessions.by("node", node).values()):
        invalidate_session(store, tx, session.id)


# -- reads -------------------------------------------------------------------------------------


def session_info(
    store: StateStore, ws: WatchSet | None, session_id: str
) -> tuple[int, Session | None]:
    """/v1/session/info/:id (None if unknown)."""
    store.watch(ws, "session:" + session_id)
    idx = store.fine_index("session:" + session_id, "sessions")
    return max(1, idx), store.sessions.sessions.get(session_id)


def session_node(store: StateStore, ws: WatchSet | None, node: str) -> tuple[int, list[Session]]:
    """/v1/session/node/:node: the node's sessions by ID."""
    store.watch(ws, "session-node:" + node)
    bucket = store.sessions.sessions.by("node", node)
    idx = store.fine_index("session-node:" + node, "sessions")
    return max(1, idx), [bucket[k] for k in sorted(bucket)]


def session_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[Session]]:
    """/v1/session/list: every session by ID."""
    store.watch(ws, "sessions")
    return max(1, store.index_of("sessions")), store.sessions.sessions.sorted_records()
