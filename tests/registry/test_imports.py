"""registry/ must not import meshd, raft or connect (DESIGN: arrows point one way)."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "registry",
    "registry.commands",
    "registry.fsm",
    "registry.queries",
    "registry.shapes",
    "registry.blocking",
    "registry.state.store",
]


def test_registry_imports_nothing_of_meshd_raft_or_connect() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "top = {m.split('.')[0] for m in sys.modules}\n"
        + "bad = sorted(top & {'meshd', 'raft', 'connect'})\n"
        + "loaded = sorted(m for m in sys.modules if m.startswith('registry'))\n"
        + "print(repr((bad, len(loaded))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    bad, loaded = eval(out.stdout)
    assert bad == []
    assert loaded >= len(MODULES)


def test_only_blocking_imports_trio() -> None:
    code = (
        "import sys\nimport registry.fsm, registry.queries, registry.shapes\n"
        "print('trio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
