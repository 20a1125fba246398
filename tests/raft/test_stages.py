"""raft/stages.py: the benchmark-only per-stage timer of the driver."""

from __future__ import annotations

import logging

import pytest

from raft.stages import Stages


def test_off_unless_the_environment_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHD_RAFT_STAGES", raising=False)
    assert Stages.from_env() is None
    monkeypatch.setenv("MESHD_RAFT_STAGES", "junk")
    assert Stages.from_env() is None
    monkeypatch.setenv("MESHD_RAFT_STAGES", "3")
    stages = Stages.from_env()
    assert stages is not None and stages.every == 3


def test_logs_median_offsets_per_path_every_n_samples(caplog: pytest.LogCaptureFixture) -> None:
    st = Stages(2)
    with caplog.at_level(logging.INFO, logger="raft.stages"):
        for key in ("a", "b"):
            st.begin(key)
            st.stamp(key, "proposed")
            st.stamp(key, "proposed")  # a stage counts once: its first time
            st.stamp("unknown", "proposed")  # never begun: ignored
            st.end(key, "leader_put", "resumed")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("event=raft_stages path=leader_put n=2 proposed=")
    fields = dict(kv.split("=") for kv in lines[0].split()[3:])
    assert list(fields) == ["proposed", "resumed"]
    assert 0 <= float(fields["proposed"]) <= float(fields["resumed"])
