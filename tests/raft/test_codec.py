"""raft.codec: message maps round-trip every field; bad maps raise CodecError."""

from __future__ import annotations

from typing import Any

import pytest

from raft.codec import CodecError, message_from_obj, message_to_obj
from raft.types import (
    Configuration,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Server,
    Snapshot,
    SnapshotMeta,
)

_CONF = Configuration((Server("a", "127.0.0.1:1"),))


@pytest.mark.parametrize(
    "msg",
    [
        Message(MessageType.HEARTBEAT, "a", "b", 3, commit=7, context=b"\x00" * 8),
        Message(MessageType.APP_RESP, "b", "a", 3, log_term=2, reject=True, reject_hint=5),
        Message(
            MessageType.APP,
            "a",
            "b",
            3,
            log_term=2,
            index=4,
            commit=4,
            entries=(Entry(5, 3, data=b"x"), Entry(6, 3, EntryKind.CONFIG, b"c")),
        ),
        Message(MessageType.SNAP, "a", "b", 3, snapshot=Snapshot(SnapshotMeta(9, 2, _CONF), b"s")),
    ],
    ids=["heartbeat", "reject", "append", "snap"],
)
def test_every_field_round_trips(msg: Message) -> None:
    assert message_from_obj(message_to_obj(msg)) == msg


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ([1], "not a map"),
        ({"t": 99, "s": "a", "d": "b", "tm": 1}, "bad message"),  # no such type
        ({"t": [1], "s": "a", "d": "b", "tm": 1}, "bad message"),  # unhashable type
        ({"t": 1, "s": "a", "d": "b"}, "bad message"),  # no term
        ({"t": 1, "s": "a", "d": "b", "tm": 1, "e": [[1, 1, 7, b""]]}, "bad entry"),  # kind 7
        ({"t": 1, "s": "a", "d": "b", "tm": 1, "e": [[1, 1]]}, "bad entry"),
        ({"t": 1, "s": "a", "d": "b", "tm": 1, "e": 5}, "bad message"),
        ({"t": 1, "s": "a", "d": "b", "tm": "x"}, "bad message"),
    ],
)
def test_bad_maps_raise_codec_error(obj: Any, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        message_from_obj(obj)
