"""The snapshot archive that ``/v1/snapshot`` saves and restores.

Since format 2 it is Consul's archive (snapshot/archive.go): a gzip-compressed
tar holding, in this order,

* ``meta.json``: Raft's ``SnapshotMeta`` as JSON (``Version``, ``ID``,
  ``Index``, ``Term``, ``Peers``, ``Configuration``, ``ConfigurationIndex``,
  ``Size``), plus meshd's ``Datacenter``, ``Node``, ``Time`` and ``Format``;
* ``state.bin``: the registry FSM snapshot (``Size`` bytes);
* ``SHA256SUMS``: ``<hex sha256>  <name>`` lines for the two files above,
  checked on every read as Consul does.

so tools that open a Consul snapshot's metadata read meshd's. The state is
meshd's own encoding: a Consul server cannot restore it, nor meshd Consul's.

Format 1 (``MESHSNAP-ARCHIVE``, below) is still read, so older backups can
be inspected and restored::

    offset  size  field
    0       16    magic  b"MESHSNAP-ARCHIVE"
    16      2     format version, big-endian (1)
    18      4     header length H, big-endian
    22      H     header: UTF-8 JSON {"Index", "Term", "Datacenter", "Node",
                  "Time", "Compression": "zlib", "Size", "StateSHA256"}
    22+H    ...   payload: the registry FSM snapshot, zlib-compressed
    end-32  32    SHA-256 of every byte before it

Sans-I/O: bytes in, bytes out; callers run it in a thread.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import tarfile
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
    "encode_legacy_archive",
]

MAGIC = b"MESHSNAP-ARCHIVE"
VERSION = 2  # the format encode_archive writes (1: the flat MESHSNAP-ARCHIVE file)
LEGACY_VERSION = 1
GZIP_MAGIC = b"\x1f\x8b"
META_FILE, STATE_FILE, SUMS_FILE = "meta.json", "state.bin", "SHA256SUMS"
STATE_FORMAT = "meshd-registry"
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
    version: int = VERSION  # the archive format it was read from

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


def encode_legacy_archive(meta: ArchiveMeta, state: bytes, *, level: int = 6) -> bytes:
    """The format-1 archive of ``state`` (kept to test that it is still read)."""
    header = json.dumps(meta.header(state), sort_keys=True).encode()
    body = _PREFIX.pack(MAGIC, LEGACY_VERSION, len(header)) + header + zlib.compress(state, level)
    return body + hashlib.sha256(body).digest()


def decode_archive(archive: bytes) -> tuple[ArchiveMeta, bytes]:
    """Verify ``archive`` and return its metadata and the FSM snapshot bytes.

    Raises ``ArchiveError`` for anything that is not an intact archive of a
    version this code reads: wrong magic, truncation, checksum mismatch,
    bad header, undecodable or oversized payload.
    """
    if archive.startswith(GZIP_MAGIC):
        return _decode_tar(archive)
    if len(archive) < _PREFIX.size + _DIGEST:
        raise ArchiveError(f"too short to be a snapshot archive ({len(archive)} bytes)")
    magic, version, header_len = _PREFIX.unpack_from(archive)
    if magic != MAGIC:
        raise ArchiveError("not a meshd snapshot archive (bad magic)")
    if version != LEGACY_VERSION:
        raise ArchiveError(
            f"unsupported archive version {version} (this agent reads {LEGACY_VERSION})"
        )
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
        LEGACY_VERSION,
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


# ------------------------------------------------------- format 2: tar.gz


def _meta_json(meta: ArchiveMeta, state: bytes, servers: list[dict[str, Any]]) -> bytes:
    millis = int(meta.time * 1000)
    doc = {
        "Version": 1,
        "ID": f"{meta.term}-{meta.index}-{millis}",
        "Index": meta.index,
        "Term": meta.term,
        "Peers": "",
        "Configuration": {"Servers": servers},
        "ConfigurationIndex": 0,
        "Size": len(state),
        "Datacenter": meta.datacenter,
        "Node": meta.node,
        "Time": meta.time,
        "Format": STATE_FORMAT,
    }
    return (json.dumps(doc) + "\n").encode()  # Go's json.Encoder ends with a newline


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(mtime)
    tar.addfile(info, io.BytesIO(data))


def encode_archive(
    meta: ArchiveMeta,
    state: bytes,
    *,
    level: int = 6,
    servers: list[dict[str, Any]] | None = None,
) -> bytes:
    """Consul's archive (gzip-compressed tar) of FSM snapshot bytes ``state``
    taken at ``meta``; ``servers`` (``{"Suffrage", "ID", "Address"}``) is the
    Raft configuration to record in meta.json."""
    meta_bytes = _meta_json(meta, state, servers or [])
    sums = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n"
        for name, data in ((META_FILE, meta_bytes), (STATE_FILE, state))
    ).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, META_FILE, meta_bytes, meta.time)
        _add(tar, STATE_FILE, state, meta.time)
        _add(tar, SUMS_FILE, sums, meta.time)
    return gzip.compress(raw.getvalue(), compresslevel=level, mtime=int(meta.time))


def _gunzip(archive: bytes) -> bytes:
    """The whole gzip stream, its CRC and length checked, at most
    ``MAX_STATE_BYTES`` plus room for the small files (a bomb stops there)."""
    limit = MAX_STATE_BYTES + 2 * MAX_HEADER_BYTES + 16 * 1024
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(archive, limit)
    except zlib.error as exc:
        raise ArchiveError(f"failed reading snapshot: {exc}") from None
    if inflater.unconsumed_tail:
        raise ArchiveError("failed reading snapshot: the archive is too large")
    if not inflater.eof:
        raise ArchiveError("failed reading snapshot: the archive is truncated")
    return raw


def _tar_members(archive: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    raw = _gunzip(archive)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if member.name not in (META_FILE, STATE_FILE, SUMS_FILE) or not member.isfile():
                    raise ArchiveError(f"unexpected file {member.name!r} in snapshot")
                limit = MAX_STATE_BYTES if member.name == STATE_FILE else MAX_HEADER_BYTES
                if member.size > limit:
                    raise ArchiveError(f"{member.name} is too large ({member.size} bytes)")
                handle = tar.extractfile(member)
                assert handle is not None  # a regular file
                files[member.name] = handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"failed reading snapshot: {exc}") from None
    return files


def _verify_sums(files: dict[str, bytes]) -> None:
    seen: set[str] = set()
    for line in files[SUMS_FILE].decode("ascii", "replace").splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or name not in (META_FILE, STATE_FILE):
            raise ArchiveError("failed checking integrity of snapshot: malformed SHA256SUMS")
        if hashlib.sha256(files[name]).hexdigest() != digest.lower():
            raise ArchiveError(
                f"failed checking integrity of snapshot: hash check failed for {name!r}"
            )
        seen.add(name)
    for name in (META_FILE, STATE_FILE):
        if name not in seen:
            raise ArchiveError(f"failed checking integrity of snapshot: file missing for {name!r}")


def _decode_tar(archive: bytes) -> tuple[ArchiveMeta, bytes]:
    files = _tar_members(archive)
    for name in (META_FILE, STATE_FILE, SUMS_FILE):
        if name not in files:
            raise ArchiveError(f"snapshot has no {name}")
    _verify_sums(files)
    try:
        doc = json.loads(files[META_FILE])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"failed to decode snapshot metadata: {exc}") from None
    if not isinstance(doc, dict):
        raise ArchiveError("failed to decode snapshot metadata: not a JSON object")
    for key in ("Index", "Term"):
        if not isinstance(doc.get(key), int) or isinstance(doc.get(key), bool):
            raise ArchiveError(f"snapshot metadata field {key} missing or of the wrong type")
    if doc.get("Format") != STATE_FORMAT:
        raise ArchiveError(
            f"state format {doc.get('Format')!r} is not {STATE_FORMAT!r} "
            "(a Consul server's snapshot cannot be read by meshd)"
        )
    state = files[STATE_FILE]
    if doc.get("Size", len(state)) != len(state):
        raise ArchiveError(f"state size mismatch (metadata says {doc.get('Size')} bytes)")
    time_value = doc.get("Time", 0.0)
    meta = ArchiveMeta(
        int(doc["Index"]),
        int(doc["Term"]),
        str(doc.get("Datacenter", "")),
        str(doc.get("Node", "")),
        float(time_value) if isinstance(time_value, int | float) else 0.0,
        VERSION,
    )
    return meta, state
