"""Shared pytest configuration: every test runs in CI, e2e and slow included.

Parallel runs. ``make test`` runs pytest under pytest-xdist
(``-n 3 --dist loadfile --no-loadscope-reorder``); a plain ``pytest`` run is
serial and behaves the same. What a test file must follow:

- A file runs whole on one worker, its tests in order (a module-scoped agent
  or cluster starts once). Different files run at the same time.
- Something machine-wide that two files use goes in ``SHARED`` below: the
  files under one prefix run on one worker, one after another.
  (``@pytest.mark.xdist_group`` does NOT work here: pytest-xdist 3.8 renames
  ``item._nodeid``, which pytest 9.2 no longer reads.)
- A fixed loopback subnet (``tools.local_cluster`` clusters bind Consul's
  fixed ports on ``127.0.N.x``) belongs to one file:
  tests/test_loopback_subnets.py fails on a second user. Free ports on
  127.0.0.1 (``free_port()``) need nothing.
- ``apt-get`` runs inside ``tests.machine_lock.machine_lock("apt")``, and
  ``python -m build`` of the tree (its sdist step writes meshd.egg-info
  there) inside ``machine_lock("build")``.
- Files with a ``slow`` test are handed out first, so a long file does not
  start last and set the run's tail.
- Wall-time asserts must hold on a loaded 2-core machine with other files
  running beside them: assert fake time (autojump_clock), or put the figure
  in bench/.
"""

from __future__ import annotations

import gc
from collections.abc import Generator
from typing import Any

import pytest

# Path prefix -> group: files under a prefix never run at the same time.
SHARED = {
    # One Chromium at a time; the session-scoped browser starts once.
    "tests/ui/": "ui",
    # test_mesh_metrics reuses test_l7_mesh's mesh fixture, so its subnet too.
    "tests/e2e/test_l7_mesh.py": "l7-mesh",
    "tests/e2e/test_mesh_metrics.py": "l7-mesh",
}


def scope_of(nodeid: str) -> str:
    """The unit a worker takes whole: the file, or its SHARED group."""
    path = nodeid.split("::", 1)[0]
    for prefix, group in SHARED.items():
        if path.startswith(prefix):
            return group
    return path


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with the SHARED groups (other modes: xdist's own)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return FileGroupScheduling(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Generator[None, object, object]:
    """After every other plugin: files in a scope with a slow test first
    (stable, whole files, so a plain run keeps each file's tests together)."""
    result = yield
    slow = {scope_of(item.nodeid) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: scope_of(item.nodeid) not in slow)
    return result


@pytest.fixture(autouse=True)
def _collect_after_agents_stopped() -> Generator[None, None, None]:
    """After a test (or the module before it) stopped the last agent run in
    this worker, the complete GC pass over what its frozen heap kept runs
    here, between tests, not inside whichever timed test comes next
    (meshd/agent/gc_policy.py, uninstall)."""
    from meshd.agent import gc_policy

    yield
    if gc_policy.uninstalls != _collected[0]:
        gc.collect()
        _collected[0] = gc_policy.uninstalls


_collected = [0]  # gc_policy.uninstalls at this worker's last collection
