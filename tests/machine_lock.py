"""A lock held across pytest-xdist workers (and concurrent pytest runs) on this
machine, for steps that must not overlap: ``apt-get`` (dpkg's lock makes a
second concurrent install fail rather than wait)."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Hold ``<tmp>/meshd-tests-NAME.lock`` exclusively (blocks until free)."""
    path = Path(tempfile.gettempdir()) / f"meshd-tests-{name}.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
