"""Snapshot archives sent to a server in chunks, for a restore.

An RPC frame is at most 8 MiB, and archives are often larger; Consul
streams the archive to the server. A client agent (or anything holding an
archive) calls ``push_archive``: archives up to ``CHUNK`` go in one
``Snapshot.Restore``; larger ones are sent as ``Snapshot.Upload`` calls of
at most ``CHUNK`` bytes each, in order, to the same server, and then
restored with ``Snapshot.Restore {"upload": id}``.

The server side (``Uploads``) bounds what it holds: an archive of at most
``MAX_UPLOAD`` bytes (the HTTP restore limit), ``MAX_UPLOADS`` uploads at
once (the oldest is dropped for a new one), each forgotten ``UPLOAD_TTL``
seconds after its last chunk. A chunk must start where the previous one
ended and not pass the announced size; anything else is a 400 and the
upload is dropped, so a broken transfer never restores a partial archive.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument

__all__ = ["CHUNK", "MAX_UPLOAD", "Uploads", "push_archive"]

CHUNK = 4 << 20  # well below the 8 MiB RPC frame, with room for the envelope
MAX_UPLOAD = 512 << 20  # the HTTP restore body limit (meshd/api/snapshot.py)
MAX_UPLOADS = 2
UPLOAD_TTL = 120.0

Call = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


async def push_archive(call: Call, archive: bytes) -> Any:
    """Restore ``archive`` through ``call`` (RPCs to one server): in one
    ``Snapshot.Restore`` when it fits, else uploaded in chunks first.
    Returns the restore's answer; raises what ``call`` raises."""
    if len(archive) <= CHUNK:
        return await call("Snapshot.Restore", {"archive": archive})
    upload = ""
    for offset in range(0, len(archive), CHUNK):
        part = archive[offset : offset + CHUNK]
        args = {"id": upload, "offset": offset, "size": len(archive), "data": part}
        upload = str((await call("Snapshot.Upload", args))["id"])
    return await call("Snapshot.Restore", {"upload": upload})


@dataclass
class _Upload:
    size: int
    expires: float
    data: bytearray = field(default_factory=bytearray)


class Uploads:
    """The archives being uploaded to one server (see the module docstring)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._uploads: dict[str, _Upload] = {}

    def __len__(self) -> int:
        return len(self._uploads)

    def add_chunk(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Append one ``Snapshot.Upload`` chunk; returns ``{"id", "received"}``.
        Raises ``InvalidArgument`` naming the bad argument (the upload is dropped)."""
        now = self._clock()
        for key in [k for k, u in self._uploads.items() if u.expires < now]:
            del self._uploads[key]
        data, offset, size = args.get("data"), args.get("offset"), args.get("size")
        key = str(args.get("id") or "")
        if not isinstance(data, bytes) or not 0 < len(data) <= CHUNK:
            self._uploads.pop(key, None)
            raise InvalidArgument(f"data: expected 1 to {CHUNK} bytes", "data")
        if not key:
            if not isinstance(size, int) or not 0 < size <= MAX_UPLOAD:
                raise InvalidArgument(f"size: expected 1 to {MAX_UPLOAD} bytes", "size")
            while len(self._uploads) >= MAX_UPLOADS:
                del self._uploads[next(iter(self._uploads))]
            key = str(uuid.uuid4())
            self._uploads[key] = _Upload(size, now + UPLOAD_TTL)
        upload = self._uploads.get(key)
        if upload is None:
            raise InvalidArgument("id: unknown or expired snapshot upload; restore again", "id")
        if offset != len(upload.data) or len(upload.data) + len(data) > upload.size:
            del self._uploads[key]
            raise InvalidArgument(
                f"offset: chunk at {offset} does not follow the {len(upload.data)} bytes "
                f"received of {upload.size}; restore again",
                "offset",
            )
        upload.data += data
        upload.expires = now + UPLOAD_TTL
        return {"id": key, "received": len(upload.data)}

    def take(self, key: str) -> bytes:
        """The complete archive of upload ``key``, forgotten here. Raises
        ``InvalidArgument`` if it is unknown or incomplete (then dropped)."""
        upload = self._uploads.pop(key, None)
        if upload is None:
            raise InvalidArgument(
                "upload: unknown or expired snapshot upload; restore again", "upload"
            )
        if len(upload.data) != upload.size:
            raise InvalidArgument(
                f"upload: incomplete snapshot upload ({len(upload.data)} of {upload.size} "
                "bytes); restore again",
                "upload",
            )
        return bytes(upload.data)
