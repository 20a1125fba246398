"""The import contracts of pyproject.toml ([tool.importlinter], run by `make imports`).

DESIGN.md: raft, registry and connect import nothing of each other or of
meshd; meshd.api reaches the agent only through the protocols of
meshd/api/ports.py, never the ``Agent`` class; meshd.agent imports nothing of
meshd.api (but meshd.agent.agent, which builds the App), meshd.api imports
of meshd.agent are only the two listed (a ratchet), and the shared
types below both (meshd.acl, meshd.defs, meshd.values, meshd.wire,
meshd.intention_decision, meshd.peers) and meshd.dns import neither. The first test runs the
contracts on the tree; the others copy the four packages into a temporary
directory, add one forbidden import, and show `lint-imports` failing on it
with the offending import named, so the check demonstrably can fail (also
for an import inside a function and one under ``if TYPE_CHECKING:``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("raft", "registry", "connect", "meshd")
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # The tree in ``cwd`` must win over the editable install of the real one.
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 7 kept, 0 broken." in out.stdout


VIOLATIONS = [
    (
        "connect/_violation.py",
        "from registry.records import Intention\n",
        "connect imports nothing of meshd, registry or raft BROKEN",
        "connect._violation -> registry.records",
    ),
    (
        "raft/_violation.py",
        "def lazy() -> None:\n    import meshd.durations  # noqa: F401\n",
        "raft imports nothing of registry, connect or meshd BROKEN",
        "raft._violation -> meshd.durations",
    ),
    (
        "registry/_violation.py",
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import connect.spiffe\n",
        "registry imports nothing of raft, connect or meshd BROKEN",
        "registry._violation -> connect.spiffe",
    ),
    (
        "meshd/api/_violation.py",
        "import typing\n\nif typing.TYPE_CHECKING:\n    from ..agent.agent import Agent\n",
        "meshd.api reaches the agent through meshd.api.ports, never meshd.agent.agent BROKEN",
        "meshd.api._violation -> meshd.agent.agent",
    ),
    (
        "meshd/api/_new_edge.py",
        "from meshd.agent.mesh_stats import MeshStats  # noqa: F401\n",
        "meshd.api imports of meshd.agent are only the two listed BROKEN",
        "meshd.api._new_edge -> meshd.agent.mesh_stats",
    ),
    (
        "meshd/agent/_violation.py",
        "def lazy() -> None:\n    from meshd.api import topology  # noqa: F401\n",
        "meshd.agent imports meshd.api only in meshd.agent.agent (the App) BROKEN",
        "meshd.agent._violation -> meshd.api.topology",
    ),
    (
        "meshd/acl/_violation.py",
        "from meshd.agent.local import LocalState  # noqa: F401\n",
        "shared types and meshd.dns import neither meshd.agent nor meshd.api BROKEN",
        "meshd.acl._violation -> meshd.agent.local",
    ),
]


@pytest.mark.parametrize(("path", "source", "broken", "edge"), VIOLATIONS)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, path: str, source: str, broken: str, edge: str
) -> None:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    clean = _lint_imports(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    (tmp_path / path).write_text(source)
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert broken in out.stdout
    assert edge in out.stdout
    # meshd.api -> meshd.agent.agent also breaks "only the two listed"
    broken_count = 2 if edge.endswith("-> meshd.agent.agent") else 1
    assert f"Contracts: {7 - broken_count} kept, {broken_count} broken." in out.stdout
