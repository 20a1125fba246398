"""raft/stages.py: the benchmark-only per-stage timer of the driver."""

from __future__ import annotations

import logging

import pytest
import trio

from raft.node import NodeConfig, RaftNode
from raft.stages import CURRENT, Stages, stamp
from raft.storage import MemoryStorage
from raft.types import Configuration, Server
from tests.raft.kvfsm import KVFSM, incr


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


async def test_apply_stamps_the_driver_stages_into_the_callers_request_sample(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MESHD_RAFT_STAGES", "1")
    node = RaftNode(
        NodeConfig("a", "a:1", tick_interval=0.01),
        MemoryStorage(),
        KVFSM(),
        bootstrap=Configuration((Server("a", "a:1"),)),
    )
    outer = Stages(1)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_for_leader(2)
        with caplog.at_level(logging.INFO, logger="raft.stages"):
            assert await node.apply(incr("alone")) == 1  # no request sample: its own path
            sample = outer.begin("req")
            assert sample is not None
            token = CURRENT.set(sample)
            try:
                assert await node.apply(incr("n")) == 1
                stamp("answered")
            finally:
                CURRENT.reset(token)
            outer.end("req", "http_put", "written")
        nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split()[1] for line in lines] == ["path=leader_put", "path=http_put"]
    fields = dict(kv.split("=") for kv in lines[1].split()[3:])
    assert list(fields)[:2] == ["apply", "proposed"]
    assert list(fields)[-3:] == ["resumed", "answered", "written"]
    assert {"committed", "applied"} <= set(fields)
    offsets = [float(v) for v in fields.values()]
    assert offsets == sorted(offsets)


def test_stamp_outside_a_timed_request_does_nothing() -> None:
    stamp("routed")  # no sample published: no error, nothing to record
    assert CURRENT.get() is None
