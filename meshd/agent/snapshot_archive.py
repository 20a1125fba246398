"""The snapshot archive that ``/v1/snapshot`` saves and restores.

Consul's archive is a gzipped tar of Raft's snapshot, its metadata and a
SHA-256 list; meshd's has the same parts in one flat, self-checking file::

    offset  size  field
    0       16    magic  b"MESHSNAP-ARCHIVE"
    16      2     format version, big-endian (1)
    18      4     header length H, big-endian
    22      H     header: UTF-8 JSON {"Index", "Term", "Datacenter", "Node",
                  "Time", "Compression": "zlib", "Size", "StateSHA256"}
    22+H    ...   payload: the registry FSM snapshot, zlib-compressed
    end-32  32    SHA-256 of every byte before it

``Index``/``Term`` are the Raft position the state was taken at, ``Size``
and ``StateSHA256`` describe the uncompressed FSM bytes. The trailer covers
the header too, so any flipped byte anywhere is reported before anything is
decoded further. Sans-I/O: bytes in, bytes out; callers run it in a thread.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAGIC",
    "MAX_STATE_BYTES",
    "ArchiveError",
    "ArchiveMeta",
    "decode_archive",
    "encode_archive",
]

MAGIC = b"MESHSNAP-ARCHIVE"
VERSION = 1
_PREFIX = struct.Struct(">16sHI")
_DIGEST = 32
MAX_HEADER_BYTES = 64 * 1024
# A decompression bomb must not eat the server's memory.
MAX_STATE_BYTES = 1 << 30


class ArchiveError(ValueError):
    """The bytes are not a valid snapshot archive; the message says why."""


@dataclass(frozen=True)
class ArchiveMeta:
    """Where a snapshot was taken."""

    index: int
    term: int
    datacenter: str = ""
    node: str = ""
    time: float = 0.0

    def header(self, state: bytes) -> dict[str, Any]:
        return {
            "Index": self.index,
            "Term": self.term,
            "Datacenter": self.datacenter,
            "Node": self.node,
            "Time": self.time,
            "Compression": "zlib",
            "Size": len(state),
            "StateSHA256": hashlib.sha256(state).hexdigest(),
        }


def encode_archive(meta: ArchiveMeta, state: bytes, *, level: int = 6) -> bytes:
    """The archive of FSM snapshot bytes ``state`` taken at ``meta``."""
    header = json.dumps(meta.header(state), sort_keys=True).encode()
    body = _PREFIX.pack(MAGIC, VERSION, len(header)) + header + zlib.compress(state, level)
    return body + hashlib.sha256(body).digest()


def decode_archive(archive: bytes) -> tuple[ArchiveMeta, bytes]:
    """Verify ``archive`` and return its metadata and the FSM snapshot bytes.

    Raises ``ArchiveError`` for anything that is not an intact archive of a
    version this code reads: wrong magic, truncation, checksum mismatch,
    bad header, undecodable or oversized payload.
    """
    if len(archive) < _PREFIX.size + _DIGEST:
        raise ArchiveError(f"too short to be a snapshot archive ({len(archive)} bytes)")
    magic, version, header_len = _PREFIX.unpack_from(archive)
    if magic != MAGIC:
        raise ArchiveError("not a meshd snapshot archive (bad magic)")
    if version != VERSION:
        raise ArchiveError(f"unsupported archive version {version} (this agent reads {VERSION})")
    body, digest = archive[:-_DIGEST], archive[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise ArchiveError("checksum mismatch: the archive is corrupt or truncated")
    if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len > len(body):
        raise ArchiveError(f"header length {header_len} out of range")
    header = _header(body[_PREFIX.size : _PREFIX.size + header_len])
    state = _inflate(body[_PREFIX.size + header_len :], int(header["Size"]))
    if hashlib.sha256(state).hexdigest() != header["StateSHA256"]:
        raise ArchiveError("state checksum mismatch")
    meta = ArchiveMeta(
        int(header["Index"]),
        int(header["Term"]),
        str(header.get("Datacenter", "")),
        str(header.get("Node", "")),
        float(header.get("Time", 0.0)),
    )
    return meta, state


def _header(raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ArchiveError("header is not a JSON object")
    for key, kind in (("Index", int), ("Term", int), ("Size", int), ("StateSHA256", str)):
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise ArchiveError(f"header field {key} missing or of the wrong type")
    if header.get("Compression") != "zlib":
        raise ArchiveError(f"unknown compression {header.get('Compression')!r}")
    if not 0 <= header["Size"] <= MAX_STATE_BYTES:
        raise ArchiveError(f"state size {header['Size']} out of range")
    return header


def _inflate(payload: bytes, size: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        state = inflater.decompress(payload, size + 1)
    except zlib.error as exc:
        raise ArchiveError(f"payload does not decompress: {exc}") from None
    if len(state) != size or not inflater.eof or inflater.unconsumed_tail:
        raise ArchiveError(f"payload size mismatch (header says {size} bytes)")
    return state
