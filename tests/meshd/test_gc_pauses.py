"""The agent's GC pause log: one ``event=gc_pause`` line per collection at
least as long as the threshold, with its generation and CPU time."""

from __future__ import annotations

import gc
import logging

import pytest

from meshd.agent import gc_pauses


def test_a_collection_over_the_threshold_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    pauses = gc_pauses.PauseLog(threshold=0.0)
    gc.callbacks.append(pauses)
    try:
        with caplog.at_level(logging.WARNING, logger="meshd.gc"):
            gc.collect(1)
    finally:
        gc.callbacks.remove(pauses)
    lines = [r.getMessage() for r in caplog.records if "event=gc_pause" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("event=gc_pause generation=1 ms=")
    assert " cpu_ms=" in lines[0]
    assert pauses.longest > 0


def test_short_collections_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    pauses = gc_pauses.PauseLog(threshold=60.0)
    gc.callbacks.append(pauses)
    try:
        with caplog.at_level(logging.WARNING, logger="meshd.gc"):
            gc.collect(0)
    finally:
        gc.callbacks.remove(pauses)
    assert not [r for r in caplog.records if "event=gc_pause" in r.getMessage()]
    assert 0 < pauses.longest < 60.0


def test_install_adds_one_pause_log_per_process() -> None:
    before = list(gc.callbacks)
    try:
        first = gc_pauses.install()
        assert gc_pauses.install() is first
        assert sum(isinstance(cb, gc_pauses.PauseLog) for cb in gc.callbacks) == 1
    finally:
        gc.callbacks[:] = before
