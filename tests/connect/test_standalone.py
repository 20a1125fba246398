"""connect/ stands alone: importing it, or the proxy process's entry point,
loads no module of registry, raft or meshd (DESIGN.md: the proxy process
loads none of them). Each check runs in a fresh interpreter so that
nothing the test session imported counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("registry", "raft", "meshd")


def _loaded_after(module: str) -> list[str]:
    code = (
        "import json, sys\n"
        f"import {module}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize(
    "module",
    ["connect", "connect.proxy.main", "connect.intentions", "connect.rotation", "connect.ca"],
)
def test_importing_connect_loads_nothing_of_registry_raft_or_meshd(module: str) -> None:
    assert _loaded_after(module) == []


def test_the_check_sees_registry_modules_when_they_are_loaded() -> None:
    # The agent's adapter imports both sides: the same probe must report it.
    loaded = _loaded_after("meshd.agent.ca_records")
    assert "registry.records" in loaded
    assert "meshd.agent.ca_records" in loaded
