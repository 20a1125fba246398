"""msgpack encoding of raft/ data: one map per object, ``v`` is the format
version. Used by storage (entries, configuration, hard state) and transport
(messages). Decoding validates shapes and raises ``CodecError``."""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import RaftError
from .types import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    Server,
    Snapshot,
    SnapshotMeta,
    Suffrage,
)

VERSION = 1


class CodecError(RaftError):
    """Bytes that do not decode to the expected raft/ object."""


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"undecodable msgpack: {exc}") from exc


def entry_to_obj(e: Entry) -> list[Any]:
    return [e.index, e.term, int(e.kind), e.data]


def entry_from_obj(o: Any) -> Entry:
    try:
        index, term, kind, data = o
        return Entry(int(index), int(term), EntryKind(kind), bytes(data))
    except (TypeError, ValueError) as exc:
        raise CodecError(f"bad entry: {exc}") from exc


def config_to_obj(c: Configuration) -> list[Any]:
    return [[s.id, s.address, int(s.suffrage)] for s in c.servers]


def config_from_obj(o: Any) -> Configuration:
    try:
        return Configuration(tuple(Server(str(i), str(a), Suffrage(v)) for i, a, v in o))
    except (TypeError, ValueError) as exc:
        raise CodecError(f"bad configuration: {exc}") from exc


def encode_configuration(c: Configuration) -> bytes:
    return _pack({"v": VERSION, "servers": config_to_obj(c)})


def decode_configuration(data: bytes) -> Configuration:
    o = _unpack(data)
    if not isinstance(o, dict) or "servers" not in o:
        raise CodecError("bad configuration")
    return config_from_obj(o["servers"])


def encode_hard_state(h: HardState) -> bytes:
    return _pack({"v": VERSION, "term": h.term, "vote": h.vote, "commit": h.commit})


def decode_hard_state(data: bytes) -> HardState:
    o = _unpack(data)
    try:
        return HardState(int(o["term"]), o["vote"], int(o["commit"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"bad hard state: {exc}") from exc


def meta_to_obj(m: SnapshotMeta) -> dict[str, Any]:
    return {"index": m.index, "term": m.term, "conf": config_to_obj(m.configuration)}


def meta_from_obj(o: Any) -> SnapshotMeta:
    try:
        return SnapshotMeta(int(o["index"]), int(o["term"]), config_from_obj(o["conf"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"bad snapshot meta: {exc}") from exc


def message_to_obj(m: Message, *, with_snapshot_data: bool = True) -> dict[str, Any]:
    o: dict[str, Any] = {"v": VERSION, "t": int(m.type), "s": m.src, "d": m.dst, "tm": m.term}
    if m.log_term:
        o["lt"] = m.log_term
    if m.index:
        o["i"] = m.index
    if m.entries:
        o["e"] = [entry_to_obj(e) for e in m.entries]
    if m.commit:
        o["c"] = m.commit
    if m.reject:
        o["r"] = True
    if m.reject_hint:
        o["rh"] = m.reject_hint
    if m.context:
        o["x"] = m.context
    if m.snapshot is not None:
        o["sm"] = meta_to_obj(m.snapshot.meta)
        if with_snapshot_data:
            o["sd"] = m.snapshot.data
    return o


def message_from_obj(o: Any) -> Message:
    if not isinstance(o, dict):
        raise CodecError("message is not a map")
    try:
        snap = None
        if "sm" in o:
            snap = Snapshot(meta_from_obj(o["sm"]), bytes(o.get("sd", b"")))
        return Message(
            type=MessageType(o["t"]),
            src=str(o["s"]),
            dst=str(o["d"]),
            term=int(o["tm"]),
            log_term=int(o.get("lt", 0)),
            index=int(o.get("i", 0)),
            entries=tuple(entry_from_obj(e) for e in o.get("e", ())),
            commit=int(o.get("c", 0)),
            reject=bool(o.get("r", False)),
            reject_hint=int(o.get("rh", 0)),
            context=bytes(o.get("x", b"")),
            snapshot=snap,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"bad message: {exc}") from exc


def encode_message(m: Message) -> bytes:
    return _pack(message_to_obj(m))


def decode_message(data: bytes) -> Message:
    return message_from_obj(_unpack(data))


def encode_entry(e: Entry) -> bytes:
    return _pack(entry_to_obj(e))


def decode_entry(data: bytes) -> Entry:
    return entry_from_obj(_unpack(data))


def pack(obj: Any) -> bytes:
    """Encode a plain map (frames that are not Raft messages)."""
    return _pack(obj)


def unpack(data: bytes) -> Any:
    """Decode a plain msgpack object, raising ``CodecError`` on garbage."""
    return _unpack(data)
