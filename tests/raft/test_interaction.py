"""Runs every script in testdata/ (see interaction.py); REWRITE=1 regenerates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.raft.interaction import run_file

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_interaction_script(path: Path) -> None:
    mismatches = run_file(path, rewrite=os.environ.get("REWRITE") == "1")
    assert not mismatches, "\n\n".join(
        f"command: {c}\n--- expected\n{e}\n--- actual\n{a}" for c, e, a in mismatches
    )
