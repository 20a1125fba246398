"""msgpack encoding of raft/ data: one map per object, ``v`` is the format
version. Used by storage (entries, configuration, hard state) and transport
(messages). Decoding validates shapes and raises ``CodecError``."""

from __future__ import annotations

import threading
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


_local = threading.local()


def _pack(obj: Any) -> bytes:
    # One Packer per thread, reused (``packb`` builds one per call: half the
    # cost of packing a Raft message). Storage packs in worker threads too.
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(obj)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"undecodable msgpack: {exc}") from exc


def entry_to_obj(e: Entry) -> list[Any]:
    return [e.index, e.term, int(e.kind), e.data]


# Enum lookups by value through a dict: calling the enum class costs ~1 us.
_MESSAGE_TYPES: dict[Any, MessageType] = {t.value: t for t in MessageType}
_ENTRY_KINDS: dict[Any, EntryKind] = {k.value: k for k in EntryKind}


def entry_from_obj(o: Any) -> Entry:
    try:
        index, term, kind, data = o
        return Entry(int(index), int(term), _ENTRY_KINDS[kind], bytes(data))
    except (TypeError, ValueError) as exc:
        raise CodecError(f"bad entry: {exc}") from exc
    except KeyError as exc:
        raise CodecError(f"bad entry: {exc!r} is not a valid EntryKind") from exc


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
    """Decode a message map (the receive path of every Raft message: kept
    lean, with the same checks and errors as the plain version)."""
    if not isinstance(o, dict):
        raise CodecError("message is not a map")
    get = o.get
    try:
        snap = None
        if "sm" in o:
            snap = Snapshot(meta_from_obj(o["sm"]), bytes(get("sd", b"")))
        entries = get("e")
        return Message(
            _MESSAGE_TYPES[o["t"]],
            str(o["s"]),
            str(o["d"]),
            int(o["tm"]),
            int(get("lt", 0)),
            int(get("i", 0)),
            tuple([entry_from_obj(e) for e in entries]) if entries else (),
            int(get("c", 0)),
            bool(get("r", False)),
            int(get("rh", 0)),
            bytes(get("x", b"")),
            snap,
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
