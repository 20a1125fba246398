"""Guard: each fixed loopback subnet (``127.0.N.x``, N >= 1) belongs to one
test file, so files can run at the same time (``make test`` runs pytest under
pytest-xdist, one file per worker at a time; tests/conftest.py says how).

``tools.local_cluster`` clusters and the like bind Consul's fixed ports on
their own ``127.0.N.x`` addresses; two files on one subnet would take each
other's ports. A new e2e file picks an unused N (this test lists the used
ones when it fails). bench/ counts as one owner (its smoke tests run one
after another in tests/bench), and so does tools/ (the default 127.0.1 of
its cluster scripts, which tests/e2e/test_raft_processes.py uses).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBNET = re.compile(r"\b127\.0\.([1-9]\d{0,2})\b")
# Files that name such addresses without binding or owning them.
ALLOWED = {
    "tests/test_loopback_subnets.py": "this guard",
    "tests/test_no_fixed_ports.py": "a string its own guard checks; binds nothing",
    "tests/e2e/test_http_conn_limits.py": "client source addresses (ephemeral ports) only",
}


def owner(path: str) -> str:
    """bench/ and tools/ are one owner each; a test file owns its subnets."""
    top = path.split("/", 1)[0]
    return f"{top}/" if top in ("bench", "tools") else path


def shared_subnets(files: dict[str, str]) -> dict[str, list[str]]:
    """``127.0.N`` -> its owners, for the subnets with more than one owner."""
    owners: dict[str, set[str]] = defaultdict(set)
    for path, text in files.items():
        if path in ALLOWED:
            continue
        for n in SUBNET.findall(text):
            owners[f"127.0.{n}"].add(owner(path))
    return {net: sorted(who) for net, who in owners.items() if len(who) > 1}


def tree_files() -> dict[str, str]:
    return {
        p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
        for top in ("tests", "bench", "tools")
        for p in sorted((ROOT / top).rglob("*.py"))
    }


def test_each_fixed_loopback_subnet_has_one_owner() -> None:
    files = tree_files()
    shared = shared_subnets(files)
    used = sorted({int(n) for text in files.values() for n in SUBNET.findall(text)})
    assert shared == {}, f"subnets used by more than one file: {shared}; used N: {used}"


def test_the_guard_sees_two_files_on_one_subnet() -> None:
    files = {
        "tests/e2e/test_a.py": 'LocalAgentCluster(root, subnet="127.0.5")',
        "tests/e2e/test_b.py": 'SERVER_IP = "127.0.5.1"',
        "tests/e2e/test_c.py": 'subnet="127.0.50"',
        "bench/x.py": 'default="127.0.10"',
        "bench/y.py": 'default="127.0.10.1"',
        "tests/e2e/test_http_conn_limits.py": '_open(port, "127.0.50.1")',
    }
    assert shared_subnets(files) == {"127.0.5": ["tests/e2e/test_a.py", "tests/e2e/test_b.py"]}
