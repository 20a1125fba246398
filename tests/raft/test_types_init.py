"""raft.types' messages and entries keep a dataclass's behaviour with the
fast ``__init__`` (slots set through their descriptors)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from raft.types import (
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Server,
    Snapshot,
    SnapshotMeta,
    SoftState,
    _fast_init,
)

FAST = [Entry, HardState, Message, ReadState, Server, Snapshot, SnapshotMeta, SoftState]


@pytest.mark.parametrize("cls", FAST, ids=lambda c: c.__name__)
def test_signature_and_defaults_are_the_fields(cls: type) -> None:
    params = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        want = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        assert p.default == want


def test_message_builds_compares_and_stays_frozen() -> None:
    e = Entry(3, 2, EntryKind.NOOP)
    m = Message(MessageType.APP, "a", "b", 2, index=2, log_term=1, entries=(e,))
    assert (m.type, m.src, m.dst, m.term, m.log_term, m.index) == (
        MessageType.APP,
        "a",
        "b",
        2,
        1,
        2,
    )
    assert (m.entries, m.commit, m.reject, m.reject_hint, m.context, m.snapshot) == (
        (e,),
        0,
        False,
        0,
        b"",
        None,
    )
    assert e.data == b""
    same = Message(MessageType.APP, "a", "b", 2, 1, 2, (Entry(3, 2, EntryKind.NOOP, b""),))
    assert m == same and hash(m) == hash(same)
    assert dataclasses.replace(m, term=5).term == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.term = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Message(MessageType.APP, "a")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Entry(1, 1, bogus=1)  # type: ignore[call-arg]


def test_refuses_classes_it_would_break() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Post:
        x: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        x: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class KwOnly:  # its generated __init__ would take them positionally
        x: int

    for cls in (Post, Factory, KwOnly):
        with pytest.raises(TypeError):
            _fast_init(cls)
