"""The one-step path of a plain KV write (``kv.apply_plain``: set, cas,
delete, delete-cas without a ``WriteTx``) against the transactional one
(``fsm._kv`` in a ``WriteTx``, which KV ops in a Txn still take): the same
results, rows, session index, index table, snapshot bytes and watches fired."""

from __future__ import annotations

import dataclasses
import random
import sys

import msgpack
import pytest

from registry import fsm as fsm_mod
from registry.commands import (
    ForwardedBatch,
    KVRequest,
    SessionCreate,
    SessionDestroy,
    decode_command,
    decode_plain_kv,
    encode_command,
)
from registry.errors import CorruptCommandError, ValidationError
from registry.fsm import RegistryFSM
from registry.records import KVEntry, Tombstone
from registry.results import Result
from registry.state import kv
from registry.state.store import StateStore
from registry.state.watch import WatchSet

from .builders import chk, reg, svc

S1 = "11111111-1111-1111-1111-111111111111"
KEYS = ("a", "a/b", "a/b/c", "b", "held")
WATCHED = [("kv", k) for k in KEYS] + [("kvp", p) for p in ("", "a", "a/", "a/b/", "z")]
WATCHED += ["kvs", "tombstones", "nodes"]


def _generic(fsm: RegistryFSM, index: int, cmd: KVRequest) -> Result:
    """What ``apply_command`` did for every KV op before the one-step path."""
    cmd.validate()
    tx = fsm.store.begin(index, cmd.now)
    result = fsm_mod._kv(fsm.store, tx, cmd)
    if result.ok:
        tx.commit()
    else:
        tx.abort()
    return result


def _park(store: StateStore, fired: set[object]) -> list[WatchSet]:
    sets = []
    for key in WATCHED:
        ws = WatchSet()
        store.watch(ws, key)
        ws.register(lambda key=key: fired.add(key))  # type: ignore[misc]
        sets.append(ws)
    return sets


def _random_op(rng: random.Random, index: int) -> KVRequest:
    op = rng.choice(("set", "set", "cas", "delete", "delete-cas"))
    cas = rng.choice((0, index - 1, index - 2, rng.randrange(index + 1)))
    return KVRequest(op=op, key=rng.choice(KEYS), value=rng.randbytes(3), flags=index % 3, cas=cas)


def _setup(fsm: RegistryFSM) -> None:
    """A node, a session and a key it holds (a set keeps the holder)."""
    for i, cmd in enumerate(
        (
            reg("n1", svc("web"), (chk("serfHealth"),)),
            SessionCreate(id=S1, node="n1"),
            KVRequest(op="lock", key="held", value=b"x", session=S1),
        ),
        start=1,
    ):
        assert fsm.apply_command(i, cmd)


def test_plain_path_matches_the_transactional_one() -> None:
    rng = random.Random(18)
    fast, slow = RegistryFSM(), RegistryFSM()
    _setup(fast)
    _setup(slow)
    outcomes: set[tuple[str, bool]] = set()
    for index in range(4, 400):
        cmd = _random_op(rng, index)
        fired_fast: set[object] = set()
        fired_slow: set[object] = set()
        parked = _park(fast.store, fired_fast) + _park(slow.store, fired_slow)
        got, want = fast.apply_command(index, cmd), _generic(slow, index, cmd)
        assert got == want, cmd
        assert fired_fast == fired_slow, cmd
        assert fast.store.indexes == slow.store.indexes
        for ws in parked:
            ws.unregister()
        outcomes.add((cmd.op, got.ok))
    assert fast.snapshot() == slow.snapshot()
    # both CAS ops both applied and refused (set and delete always apply)
    assert outcomes == {(op, ok) for op in ("cas", "delete-cas") for ok in (True, False)} | {
        ("set", True),
        ("delete", True),
    }
    held = fast.store.kv.entries.by("session", S1)
    assert all(held[k] is fast.store.kv.entries.get(k) for k in held)


def test_set_keeps_the_holder_and_the_session_index_points_at_the_new_row() -> None:
    fsm = RegistryFSM()
    _setup(fsm)
    assert fsm.apply_command(4, KVRequest(op="set", key="held", value=b"new", flags=5))
    entries = fsm.store.kv.entries
    entry = entries.get("held")
    assert entry == KVEntry("held", b"new", 5, S1, 1, 3, 4)
    assert entries.by("session", S1)["held"] is entry
    # invalidating the session releases the row the index holds, keeping the new value
    assert fsm.apply_command(5, SessionDestroy(id=S1))
    assert entries.get("held") == KVEntry("held", b"new", 5, "", 1, 3, 5)
    assert not entries.by("session", S1)


def test_delete_moves_both_indexes_and_replaces_a_tombstone() -> None:
    fsm = RegistryFSM()
    store = fsm.store
    assert fsm.apply_command(1, KVRequest(op="set", key="k"))
    assert fsm.apply_command(2, KVRequest(op="delete", key="k"))
    assert fsm.apply_command(3, KVRequest(op="cas", key="k", cas=0))
    assert fsm.apply_command(4, KVRequest(op="delete-cas", key="k", cas=3))
    assert store.kv.tombstones.get("k") == Tombstone("k", 4)
    assert list(store.kv.tombstones.keys_from("")) == ["k"]
    assert store.indexes == {"kvs": 4, "tombstones": 4}
    assert store.kv.entries.get("k") is None and len(store.kv.entries) == 0


def test_records_built_by_slots_have_the_fields_the_setters_set() -> None:
    # kv._entry/_tombstone set each slot directly: a field added to either
    # record (or a __post_init__) must be added there too
    assert [f.name for f in dataclasses.fields(KVEntry)] == list(kv._ENTRY_FIELDS)
    assert [f.name for f in dataclasses.fields(Tombstone)] == list(kv._TOMB_FIELDS)
    assert not hasattr(KVEntry, "__post_init__") and not hasattr(Tombstone, "__post_init__")
    assert kv._entry("k", b"v", 1, "s", 2, 3, 4) == KVEntry("k", b"v", 1, "s", 2, 3, 4)
    assert kv._tombstone("k", 9) == Tombstone("k", 9)


@pytest.mark.parametrize(
    "body",
    [
        {"op": "set", "key": "k", "value": b"v", "flags": 3, "session": "s", "now": 2},
        {"op": "cas", "key": "k", "cas": 7, "now": 1.5},
        {"op": "delete", "key": "a/b"},
        {"op": "delete-cas", "key": "a/b", "cas": 2**64 - 1},
        {"op": "delete-tree", "key": "a/"},  # not plain
        {"op": "lock", "key": "k", "session": "s"},  # not plain
        {"op": "set", "key": "é"},  # valid, but not the shortcut's
        {"op": "set", "key": ""},  # invalid
        {"op": "set", "key": "k", "flags": -1},  # invalid
        {"op": "set", "key": "k", "flags": True},  # does not decode
        {"op": "set", "key": "k", "now": "1"},  # does not decode
        {"op": "set", "key": "k", "session": None},  # does not decode
        {"op": "set", "key": "k", "bogus": 1},  # does not decode
        {"op": "set"},  # does not decode
        ["set", "k"],  # does not decode
    ],
)
def test_plain_fields_only_where_the_command_decodes_and_validates_as_plain(body: object) -> None:
    data = msgpack.packb([KVRequest.TYPE, 1, body], use_bin_type=True)
    plain = decode_plain_kv(data)
    try:
        cmd = decode_command(data)
        cmd.validate()
    except (CorruptCommandError, ValidationError):
        assert plain is None
        return
    assert isinstance(cmd, KVRequest)
    if cmd.op in kv.PLAIN_OPS and cmd.key.isascii():
        assert plain == (cmd.op, cmd.key, cmd.value, cmd.flags, cmd.cas)
        assert plain[1] is sys.intern(cmd.key)
    else:
        assert plain is None


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb([KVRequest.TYPE, 2, {"op": "set", "key": "k"}], use_bin_type=True),
        msgpack.packb([KVRequest.TYPE, 1, {"op": "set", "key": "k"}, 4], use_bin_type=True),
        msgpack.packb([2, 1, {"op": "set", "key": "k"}], use_bin_type=True),
        encode_command(SessionDestroy(id=S1)),
        b"\x93\x03\x01",
        b"\x93\x03",
        b"",
    ],
)
def test_other_bytes_are_left_to_decode_command(data: bytes) -> None:
    assert decode_plain_kv(data) is None


def test_log_bytes_and_batches_apply_as_the_decoded_commands() -> None:
    rng = random.Random(3)
    by_bytes, by_command = RegistryFSM(), RegistryFSM()
    _setup(by_bytes)
    _setup(by_command)
    for index in range(4, 120):
        cmds = [_random_op(rng, index) for _ in range(rng.choice((1, 1, 3)))]
        if rng.random() < 0.1:
            cmds.append(KVRequest(op="delete-tree", key="a/"))
        if len(cmds) == 1:
            got = by_bytes.apply(index, encode_command(cmds[0]))
            want = _generic(by_command, index, cmds[0])
        else:
            batch = ForwardedBatch(cmds=tuple(encode_command(c) for c in cmds))
            got = by_bytes.apply(index, encode_command(batch))
            want = Result(True, tuple(_generic(by_command, index, c) for c in cmds))
        assert got == want, cmds
    assert by_bytes.snapshot() == by_command.snapshot()
