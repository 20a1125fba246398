"""``meshd agent``'s one-line refusal when its Raft storage cannot be used
(meshd/cli/agent.py): what is wrong, where, and the command that recovers."""

from __future__ import annotations

import sqlite3

from meshd.cli.agent import _storage_failure, storage_refusal
from raft.errors import StorageError, StorageUnavailableError


def test_a_corrupt_database_names_the_file_and_the_mv_that_recovers() -> None:
    exc = StorageError(
        "cannot load raft state from /d/raft/raft.db: database disk image is malformed"
    )
    line = storage_refusal(exc, "/d")
    assert "\n" not in line
    assert "/d/raft/raft.db" in line and "malformed" in line
    assert "`mv /d/raft /d/raft.bad-" in line and "sends it a snapshot" in line


def test_a_full_disk_says_to_free_space_not_to_move_data_aside() -> None:
    cause = sqlite3.OperationalError("database or disk is full")
    exc = StorageUnavailableError("save of /d/raft/raft.db failed: database or disk is full")
    exc.__cause__ = cause
    line = storage_refusal(exc, "/d")
    assert "out of space" in line and "free space" in line and "4x" in line
    assert "mv " not in line


def test_the_storage_error_is_found_inside_exception_groups() -> None:
    inner = StorageError("x")
    group = ExceptionGroup("outer", [ValueError("y"), ExceptionGroup("inner", [inner])])
    assert _storage_failure(group) is inner
    assert _storage_failure(ExceptionGroup("g", [ValueError("y")])) is None
