"""Property tests: replay determinism, snapshot/restore equality, KV CAS and lock invariants."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from registry import queries
from registry.commands import (
    Command,
    KVRequest,
    SessionCreate,
    SessionDestroy,
    TxnRequest,
    encode_command,
)
from registry.errors import ErrorCode
from registry.fsm import RegistryFSM
from registry.results import Result

from .builders import Log, reg
from .strategies import PREAMBLE, SESSIONS, logs

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


def _replay(log: Log, entries: list[tuple[Command, float]]) -> list[Result]:
    results = []
    for cmd, advance in entries:
        log.now += advance
        results.append(log.apply(cmd))
    return results


@PROPERTY_SETTINGS
@given(logs)
def test_same_log_gives_same_results_and_state(entries: list[tuple[Command, float]]) -> None:
    a, b = Log(), Log()
    assert _replay(a, entries) == _replay(b, entries)
    assert a.fsm.snapshot() == b.fsm.snapshot()


@PROPERTY_SETTINGS
@given(logs, logs)
def test_restored_state_equals_original_and_evolves_identically(
    head: list[tuple[Command, float]], tail: list[tuple[Command, float]]
) -> None:
    original = Log()
    _replay(original, head)
    snap = original.fsm.snapshot()
    restored = Log()
    restored.fsm.restore(snap)
    restored.index, restored.now = original.index, original.now
    assert restored.fsm.snapshot() == snap
    assert _replay(original, tail) == _replay(restored, tail)
    assert original.fsm.snapshot() == restored.fsm.snapshot()


def _check_lock_invariants(log: Log, cmd: Command, result: Result) -> None:
    store = log.store
    for entry in store.kv.entries.values():
        if entry.session:  # a holder is always a live session
            assert store.sessions.sessions.get(entry.session) is not None


@PROPERTY_SETTINGS
@given(logs)
def test_kv_cas_and_lock_invariants(entries: list[tuple[Command, float]]) -> None:
    log = Log()
    for cmd, advance in entries:
        log.now += advance
        if isinstance(cmd, KVRequest):
            cmd = dataclasses.replace(cmd, now=log.now)
            _, before = queries.kv_get(log.store, None, cmd.key)
            delay = log.store.kv.lock_delays.get(cmd.key)
            result = log.apply(cmd)
            _, after = queries.kv_get(log.store, None, cmd.key)
            if cmd.op == "cas" and (before.modify_index if before else 0) != cmd.cas:
                assert not result and after == before  # a stale CAS changes nothing
            if cmd.op == "lock":
                if before is not None and before.session and before.session != cmd.session:
                    assert not result and after == before  # at most one holder
                if delay is not None and delay.until > cmd.now:
                    assert result.error in (ErrorCode.LOCK_DELAY, ErrorCode.INVALID_SESSION)
                    assert after == before  # lock-delay blocks re-acquire
                if result:
                    assert after is not None and after.session == cmd.session
                    if before is None or before.session != cmd.session:
                        assert after.lock_index == (before.lock_index if before else 0) + 1
        else:
            result = log.apply(cmd)
            if isinstance(cmd, TxnRequest) and not result:
                assert result.value.results == ()
        _check_lock_invariants(log, cmd, result)


def test_snapshot_bytes_do_not_depend_on_dict_insertion_order() -> None:
    a, b = RegistryFSM(), RegistryFSM()
    a.apply(1, encode_command(reg("n", node_meta={"a": "1", "b": "2"})))
    b.apply(1, encode_command(reg("n", node_meta={"b": "2", "a": "1"})))
    assert a.snapshot() == b.snapshot()


LOCK_KEYS = ("k1", "k2")
lock_steps = st.lists(
    st.tuples(
        st.sampled_from(("lock", "lock", "unlock", "destroy", "create")),
        st.integers(min_value=0, max_value=2),
        st.sampled_from(LOCK_KEYS),
        st.sampled_from((0.0, 2.0, 6.0, 16.0)),
    ),
    min_size=1,
    max_size=60,
)


@dataclasses.dataclass
class LockModel:
    """What Consul's documented semantics say the lock state must be."""

    live: set[str]
    holder: dict[str, str]
    delay_until: dict[str, float]

    def lock(self, sid: str, key: str, now: float) -> ErrorCode | None:
        if sid not in self.live:
            return ErrorCode.INVALID_SESSION
        if self.delay_until.get(key, 0.0) > now:
            return ErrorCode.LOCK_DELAY
        if self.holder.get(key, sid) != sid:
            return ErrorCode.LOCK_HELD
        self.holder[key] = sid
        return None

    def unlock(self, sid: str, key: str) -> ErrorCode | None:
        if self.holder.get(key) != sid:
            return ErrorCode.LOCK_HELD
        del self.holder[key]
        return None

    def destroy(self, sid: str, lock_delay: float, now: float) -> None:
        if sid not in self.live:
            return
        self.live.discard(sid)
        for key in [k for k, h in self.holder.items() if h == sid]:
            del self.holder[key]
            if lock_delay > 0:
                self.delay_until[key] = now + lock_delay


@PROPERTY_SETTINGS
@given(lock_steps)
def test_locks_follow_the_model(steps: list[tuple[str, int, str, float]]) -> None:
    log = Log()
    for cmd, _ in PREAMBLE:
        log.ok(cmd)
    creates = {c.id: c for c, _ in PREAMBLE if isinstance(c, SessionCreate)}
    model = LockModel(live=set(creates), holder={}, delay_until={})
    for op, i, key, advance in steps:
        log.now += advance
        sid = SESSIONS[i]
        if op == "lock":
            expected = model.lock(sid, key, log.now)
            result = log.apply(KVRequest(op="lock", key=key, value=b"v", session=sid))
            assert result.error is expected
        elif op == "unlock":
            expected = model.unlock(sid, key)
            result = log.apply(KVRequest(op="unlock", key=key, value=b"v", session=sid))
            assert result.error is expected
        elif op == "destroy":
            model.destroy(sid, creates[sid].lock_delay, log.now)
            log.ok(SessionDestroy(id=sid))
        else:
            result = log.apply(creates[sid])
            assert result.ok is (sid not in model.live)
            model.live.add(sid)
        for k in LOCK_KEYS:
            entry = log.store.kv.entries.get(k)
            assert (entry.session if entry and entry.session else None) == model.holder.get(k)
