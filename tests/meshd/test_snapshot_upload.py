"""Snapshot.Upload's server side: chunks in order, within the announced
size and the caps, complete before a restore; anything else is a 400 that
drops the upload."""

from __future__ import annotations

from typing import Any

import pytest

from meshd.agent import snapshot_upload as su
from meshd.http.errors import BadRequest


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chunk(upload: str, offset: int, data: bytes, size: int = 6) -> dict[str, Any]:
    return {"id": upload, "offset": offset, "size": size, "data": data}


def test_chunks_in_order_make_the_archive_once() -> None:
    ups = su.Uploads(Clock())
    first = ups.add_chunk(chunk("", 0, b"abc"))
    assert first["received"] == 3
    assert ups.add_chunk(chunk(first["id"], 3, b"def")) == {"id": first["id"], "received": 6}
    assert ups.take(first["id"]) == b"abcdef"
    with pytest.raises(BadRequest, match="unknown or expired"):
        ups.take(first["id"])  # taken: gone


@pytest.mark.parametrize(
    ("second", "field"),
    [
        (chunk("ID", 2, b"def"), "offset"),  # a gap or an overlap
        (chunk("ID", 3, b"defg"), "offset"),  # past the announced size
        (chunk("ID", 3, b""), "data"),
        (chunk("ID", 3, "def"), "data"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_chunk_is_refused_and_drops_the_upload(second: dict[str, Any], field: str) -> None:
    ups = su.Uploads(Clock())
    upload = ups.add_chunk(chunk("", 0, b"abc"))["id"]
    with pytest.raises(BadRequest) as err:
        ups.add_chunk({**second, "id": upload})
    assert err.value.field == field
    assert len(ups) == 0


def test_sizes_and_counts_are_bounded_and_uploads_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    ups = su.Uploads(clock)
    for size in (0, su.MAX_UPLOAD + 1, "6"):
        with pytest.raises(BadRequest) as err:
            ups.add_chunk(chunk("", 0, b"a", size=size))  # type: ignore[arg-type]
        assert err.value.field == "size"
    monkeypatch.setattr(su, "CHUNK", 4)
    with pytest.raises(BadRequest, match="1 to 4 bytes"):
        ups.add_chunk(chunk("", 0, b"abcde", size=10))
    ids = [ups.add_chunk(chunk("", 0, b"a"))["id"] for _ in range(su.MAX_UPLOADS + 1)]
    assert len(ups) == su.MAX_UPLOADS  # the oldest made room
    with pytest.raises(BadRequest, match="unknown"):
        ups.add_chunk(chunk(ids[0], 1, b"b"))
    with pytest.raises(BadRequest, match="incomplete"):
        ups.take(ids[1])
    clock.now += su.UPLOAD_TTL + 1
    with pytest.raises(BadRequest, match="unknown or expired"):
        ups.add_chunk(chunk(ids[2], 1, b"b"))


async def test_push_archive_sends_frame_sized_chunks_then_restores() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    ups = su.Uploads(Clock())

    async def call(method: str, args: Any) -> Any:
        calls.append((method, dict(args)))
        if method == "Snapshot.Upload":
            return ups.add_chunk(args)
        return {"archive": ups.take(args["upload"])} if "upload" in args else args

    archive = bytes(range(256)) * ((2 * su.CHUNK + 100) // 256 + 1)
    assert (await su.push_archive(call, archive))["archive"] == archive
    assert [m for m, _ in calls] == ["Snapshot.Upload"] * 3 + ["Snapshot.Restore"]
    assert max(len(a.get("data", b"")) for _, a in calls) == su.CHUNK
    calls.clear()
    assert (await su.push_archive(call, b"small")) == {"archive": b"small"}
    assert [m for m, _ in calls] == ["Snapshot.Restore"]
