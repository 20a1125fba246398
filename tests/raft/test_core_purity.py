"""The core is sans-I/O: importing it pulls in no I/O library, and it never
reads a clock or the global random generator (CONVENTIONS habits 1 and 2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import raft

CORE_MODULES = ["core", "membership", "log", "progress", "types", "codec", "errors"]


def test_core_imports_no_trio_socket_or_ssl() -> None:
    code = (
        "import sys; import raft.core, raft.membership, raft.log, raft.progress; "
        "bad = [m for m in ('trio', 'socket', 'ssl', 'sqlite3', 'asyncio') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"raft core imported {out.stdout.strip()}"


def test_core_never_calls_clock_or_global_random() -> None:
    root = Path(raft.__file__).parent
    forbidden = {
        ("time", "time"),
        ("time", "monotonic"),
        ("random", "random"),
        ("random", "randrange"),
        ("random", "randint"),
        ("random", "choice"),
    }
    for name in CORE_MODULES:
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name != "time" for a in node.names), f"{name}.py imports time"
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in forbidden
            ):
                raise AssertionError(f"{name}.py calls {node.value.id}.{node.attr}")
