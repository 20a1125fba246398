"""``meshd snapshot save|restore|inspect``: a round trip through a dev agent,
and local inspection of archives (good and corrupt) without any agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshd.agent.snapshot_archive import ArchiveMeta, encode_archive, encode_legacy_archive
from tests.meshd.cli_support import invoke, one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


@pytest.mark.parametrize(("encode", "version"), [(encode_archive, 2), (encode_legacy_archive, 1)])
def test_inspect_prints_index_term_size_and_checksum(
    tmp_path: Path, encode: Any, version: int
) -> None:
    archive = encode(ArchiveMeta(42, 7, "dc1", "n1", 1_700_000_000.0), b"state" * 100)
    path = tmp_path / "s.snap"
    path.write_bytes(archive)
    result = invoke(["snapshot", "inspect", str(path)])
    assert result.exit_code == 0, result.output
    fields = dict(
        line.split(None, 1)
        for line in result.stdout.replace("State size", "StateSize").splitlines()
    )
    assert fields["Index"] == "42" and fields["Term"] == "7"
    assert fields["Size"] == str(len(archive)) and fields["StateSize"] == "500"
    assert fields["Checksum"].startswith("sha256:") and len(fields["Checksum"]) == 7 + 64
    assert fields["Taken"] == "2023-11-14T22:13:20Z" and fields["Node"] == "n1"
    result = invoke(["snapshot", "inspect", "--format", "json", str(path)])
    info = json.loads(result.stdout)
    assert (info["Index"], info["Term"], info["StateSize"]) == (42, 7, 500)
    assert info["Version"] == version


def test_inspect_of_a_corrupt_or_missing_file_is_one_line(tmp_path: Path) -> None:
    archive = bytearray(encode_legacy_archive(ArchiveMeta(3, 1), b"x" * 64))
    archive[30] ^= 0xFF
    bad = tmp_path / "bad.snap"
    bad.write_bytes(bytes(archive))
    line = one_error_line(invoke(["snapshot", "inspect", str(bad)]))
    assert (
        line
        == f"Error verifying snapshot {bad}: checksum mismatch: the archive is corrupt or truncated"
    )
    other = tmp_path / "other.snap"
    other.write_bytes(b"PK\x03\x04 not a snapshot at all, just some bytes here......")
    line = one_error_line(invoke(["snapshot", "inspect", str(other)]))
    assert line.endswith("not a meshd snapshot archive (bad magic)")
    line = one_error_line(invoke(["snapshot", "inspect", str(tmp_path / "none")]))
    assert line == f"Error opening snapshot file {tmp_path / 'none'}: No such file or directory"


@pytest.mark.e2e
async def test_save_inspect_restore_round_trip(tmp_path: Path) -> None:
    snap = tmp_path / "backup.snap"
    async with dev_agent() as (_agent, api):
        await api.put("/v1/kv/config/color", raw=b"blue")
        result = await run_cli(["snapshot", "save", str(snap), *addr(api)])
        assert result.exit_code == 0, result.output
        [line] = result.stdout.splitlines()
        assert line.startswith("Saved and verified snapshot to index ")
        index = int(line.rsplit(" ", 1)[1])
        assert index > 0
        assert [p.name for p in tmp_path.iterdir()] == ["backup.snap"]  # no temp file left

        result = await run_cli(["snapshot", "inspect", "-format=json", str(snap)])
        info = json.loads(result.stdout)
        assert info["Index"] == index and info["Term"] >= 1 and info["Size"] == snap.stat().st_size

        await api.put("/v1/kv/config/color", raw=b"red")
        result = await run_cli(["snapshot", "restore", str(snap), *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Restored snapshot\n"), result.output
        assert (await api.get("/v1/kv/config/color?raw")).body == b"blue"


@pytest.mark.e2e
async def test_save_to_a_missing_directory_and_restore_of_garbage_fail_cleanly(
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "garbage.snap"
    garbage.write_bytes(b"definitely not an archive" * 4)
    async with dev_agent() as (_agent, api):
        target = tmp_path / "no" / "such" / "dir.snap"
        line = one_error_line(await run_cli(["snapshot", "save", str(target), *addr(api)]))
        assert line.startswith(f"Error creating snapshot file {target}")
        line = one_error_line(await run_cli(["snapshot", "restore", str(garbage), *addr(api)]))
        assert line.startswith("Error restoring snapshot: Unexpected response code: ")
