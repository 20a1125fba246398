"""/v1/snapshot save and restore against a real dev agent, and the archive format."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import struct
import tarfile
from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

from meshd.agent.snapshot_archive import (
    MAGIC,
    ArchiveError,
    ArchiveMeta,
    decode_archive,
    encode_archive,
    encode_legacy_archive,
)
from tests.meshd.harness import APIClient, dev_agent, dev_flags
from tests.meshd.inproc import InprocClient, inproc_agent

EXT = [
    {"Node": "ext-1", "Address": "10.0.0.1", "Service": {"Service": "db", "Port": 5432}},
    {"Node": "ext-2", "Address": "10.0.0.2", "Service": {"Service": "web", "Port": 80}},
]


async def catalog(api: APIClient | InprocClient) -> tuple[Any, Any]:
    nodes = sorted((n["Node"], n["Address"]) for n in (await api.get("/v1/catalog/nodes")).json())
    services = (await api.get("/v1/catalog/services")).json()
    services.pop("consul", None)  # the leader (re)registers the servers' service at its pace
    return nodes, services


def test_archive_is_consuls_gzipped_tar_with_meta_state_and_sums() -> None:
    state = b"registry-state" * 1000
    archive = encode_archive(ArchiveMeta(42, 7, "dc1", "n1", 1.5), state)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive))) as tar:
        assert tar.getnames() == ["meta.json", "state.bin", "SHA256SUMS"]
        files = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    meta_doc = json.loads(files["meta.json"])
    assert {"Version", "ID", "Index", "Term", "Size", "Configuration"} <= set(meta_doc)
    assert (meta_doc["Index"], meta_doc["Term"], meta_doc["Size"]) == (42, 7, len(state))
    assert files["state.bin"] == state
    sums = dict(reversed(line.split("  ")) for line in files["SHA256SUMS"].decode().splitlines())
    assert sums == {name: hashlib.sha256(files[name]).hexdigest() for name in sums}
    assert set(sums) == {"meta.json", "state.bin"}
    meta, out = decode_archive(archive)
    assert out == state and meta.version == 2
    assert (meta.index, meta.term, meta.time) == (42, 7, 1.5)
    assert (meta.datacenter, meta.node) == ("dc1", "n1")
    assert len(archive) < len(state)  # compressed


def _retar(archive: bytes, **replace: bytes) -> bytes:
    raw = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive))) as src,
        tarfile.open(fileobj=raw, mode="w") as dst,
    ):
        for m in src:
            data = replace.get(m.name.replace(".", "_"), src.extractfile(m).read())  # type: ignore[union-attr]
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def test_a_tar_whose_sums_do_not_match_is_refused() -> None:
    archive = encode_archive(ArchiveMeta(1, 1), b"state")
    with pytest.raises(ArchiveError, match=r"hash check failed for 'state\.bin'"):
        decode_archive(_retar(archive, state_bin=b"other"))
    with pytest.raises(ArchiveError, match="file missing"):
        decode_archive(_retar(archive, SHA256SUMS=b""))
    consul_like = json.dumps({"Version": 1, "Index": 1, "Term": 1, "Size": 5}).encode()
    sums = "".join(
        f"{hashlib.sha256(d).hexdigest()}  {n}\n"
        for n, d in (("meta.json", consul_like), ("state.bin", b"state"))
    )
    with pytest.raises(ArchiveError, match="Consul server's snapshot"):
        decode_archive(_retar(archive, meta_json=consul_like, SHA256SUMS=sums.encode()))


def test_legacy_archive_round_trip_and_header() -> None:
    state = b"registry-state" * 1000
    archive = encode_legacy_archive(ArchiveMeta(42, 7, "dc1", "n1", 1.5), state)
    assert archive.startswith(MAGIC)
    meta, out = decode_archive(archive)
    assert meta.version == 1
    assert out == state
    assert (meta.index, meta.term, meta.time) == (42, 7, 1.5)
    assert (meta.datacenter, meta.node) == ("dc1", "n1")
    assert len(archive) < len(state)  # compressed


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda a: a[:10], "too short"),
        (lambda a: b"X" + a[1:], "bad magic"),
        (lambda a: a[:-40] + a[-39:], "checksum"),
        (lambda a: a[:30] + bytes([a[30] ^ 1]) + a[31:], "checksum"),
        (lambda a: a[:16] + struct.pack(">H", 9) + a[18:], "version"),
    ],
)
def test_corrupt_archives_are_named(mangle: Any, reason: str) -> None:
    archive = encode_legacy_archive(ArchiveMeta(1, 1), b"state")
    with pytest.raises(ArchiveError, match=reason):
        decode_archive(mangle(archive))


def test_a_resealed_archive_with_a_wrong_state_digest_is_refused() -> None:
    archive = encode_legacy_archive(ArchiveMeta(1, 1), b"state")
    body = archive[:-32].replace(hashlib.sha256(b"state").hexdigest().encode(), b"0" * 64)
    with pytest.raises(ArchiveError, match="state checksum"):
        decode_archive(body + hashlib.sha256(body).digest())


@pytest.mark.e2e
async def test_save_then_restore_brings_the_state_back() -> None:
    async with dev_agent() as (_agent, api):
        for body in EXT:
            assert (await api.put("/v1/catalog/register", body)).status == 200
        saved_catalog = await catalog(api)
        r = await api.get("/v1/snapshot")
        assert r.status == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert int(r.headers["x-consul-index"]) > 1
        assert r.headers["x-consul-knownleader"] == "true"
        archive = r.body
        meta, _ = decode_archive(archive)
        assert meta.index == int(r.headers["x-consul-index"]) and meta.datacenter == "dc1"

        await api.put("/v1/catalog/deregister", {"Node": "ext-1"})
        await api.put("/v1/catalog/register", {"Node": "ext-3", "Address": "10.0.0.3"})
        assert await catalog(api) != saved_catalog

        r = await api.put("/v1/snapshot", raw=archive)
        assert (r.status, r.body) == (200, b"")
        assert await catalog(api) == saved_catalog
        # Writes keep working on top of the restored state.
        assert (await api.put("/v1/catalog/register", EXT[0] | {"Node": "ext-4"})).status == 200
        assert "ext-4" in {n for n, _ in (await catalog(api))[0]}


async def test_a_corrupt_archive_is_refused_with_400_and_changes_nothing(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/catalog/register", EXT[0])
        archive = (await api.get("/v1/snapshot")).body
        await api.put("/v1/catalog/register", EXT[1])
        before = await catalog(api)
        flipped = archive[:-100] + bytes([archive[-100] ^ 0xFF]) + archive[-99:]
        cases = [
            (flipped, "snapshot: "),  # gzip's CRC or the SHA256SUMS check
            (archive[: len(archive) // 2], "failed reading snapshot"),
            (b"garbage that is long enough to have a header and a digest" * 2, "magic"),
            (b"", "empty"),
        ]
        for body, needle in cases:
            r = await api.put("/v1/snapshot", raw=body)
            assert r.status == 400 and needle in r.text, (r.status, r.text)
            assert "Invalid snapshot archive" in r.text
        assert await catalog(api) == before


async def test_an_archive_whose_state_does_not_decode_is_refused(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/catalog/register", EXT[0])
        before = await catalog(api)
        bogus = encode_archive(ArchiveMeta(5, 1, "dc1"), b"\x93not a registry snapshot")
        r = await api.put("/v1/snapshot", raw=bogus)
        assert r.status == 400 and "Invalid snapshot archive" in r.text
        assert await catalog(api) == before


async def test_stale_save_is_answered_locally(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.get("/v1/snapshot?stale")
        assert r.status == 200
        decode_archive(r.body)


def _files(root: Path) -> list[tuple[str, int]]:
    found = (p for p in root.rglob("*") if p.is_file())
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in found)


@pytest.mark.e2e
async def test_a_restored_state_survives_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # It failed once in a loaded full run with the restarted server seeing an
    # empty state (a new CA, only its own node): what its data dir held at
    # the stop and what the restart loaded are in the message should it again.
    caplog.set_level(logging.INFO, logger="raft.node")
    flags = dev_flags(data_dir=str(tmp_path), node_id="0f8d2f0c-3b7a-4d6e-8a52-2f4c1e9b7d10")
    async with dev_agent(**flags) as (_agent, api):
        await api.put("/v1/catalog/register", EXT[0])
        archive = (await api.get("/v1/snapshot")).body
        await api.put("/v1/catalog/deregister", {"Node": "ext-1"})
        await api.put("/v1/catalog/register", EXT[1])
        assert (await api.put("/v1/snapshot", raw=archive)).status == 200
        await api.put("/v1/catalog/register", {"Node": "ext-5", "Address": "10.0.0.5"})
        expected = await catalog(api)
    at_stop = _files(tmp_path)
    async with dev_agent(**flags) as (_agent, api):
        nodes, services = await catalog(api)
        loaded = [r.getMessage() for r in caplog.records if "raft_loaded" in r.getMessage()]
        why = f"files at the stop: {at_stop}; at the check: {_files(tmp_path)}; loaded: {loaded}"
        assert nodes == expected[0] and services == expected[1], why
        assert "ext-2" not in {n for n, _ in nodes}


@pytest.mark.e2e
async def test_restore_takes_the_old_format_and_bodies_past_the_4mib_api_limit() -> None:
    async with dev_agent() as (_agent, api):
        await api.put("/v1/catalog/register", EXT[0])
        meta, state = decode_archive((await api.get("/v1/snapshot")).body)
        legacy = encode_legacy_archive(meta, state)
        await api.put("/v1/catalog/register", EXT[1])
        assert (await api.put("/v1/snapshot", raw=legacy)).status == 200
        assert [n for n, _ in (await catalog(api))[0] if n.startswith("ext")] == ["ext-1"]
        # Over the API-wide 4 MiB body limit: other routes refuse it with
        # 413, the restore route reads it (and refuses it as no archive).
        big = b"\x00" * (5 << 20)
        r = await api.put("/v1/kv/big", raw=big)
        assert r.status == 413
        r = await api.put("/v1/snapshot", raw=big)
        assert r.status == 400 and "Invalid snapshot archive" in r.text
