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
    assert [line.split()[:2] for line in lines] == [
        ["event=raft_stages", "path=leader_put"],
        ["event=raft_stages_raw", "path=leader_put"],  # labelled with their log index
        ["event=raft_stages", "path=http_put"],
        ["event=raft_stages_raw", "path=http_put"],
    ]
    assert ",#index=" in lines[3]
    fields = dict(kv.split("=") for kv in lines[2].split()[3:])
    assert list(fields)[:2] == ["apply", "proposed"]
    assert list(fields)[-3:] == ["resumed", "answered", "written"]
    assert {"committed", "applied"} <= set(fields)
    offsets = [float(v) for v in fields.values()]
    assert offsets == sorted(offsets)


def test_labelled_samples_are_listed_whole_with_absolute_stamps(
    caplog: pytest.LogCaptureFixture,
) -> None:
    st = Stages(2)
    with caplog.at_level(logging.INFO, logger="raft.stages"):
        st.begin("a", 1_000)
        st.label("a", "index", 7)
        st.stamp("a", "read", 5_000)  # a time taken elsewhere (the transport's read)
        st.end("a", "follower_append", "acked")
        st.begin("b", 2_000)  # no label: in the medians only
        st.stamp("b", "read", 4_000)
        st.end("b", "follower_append", "acked")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    fields = dict(kv.split("=") for kv in lines[0].split()[3:])
    assert list(fields) == ["read", "acked"]  # labels are not stages
    assert fields["read"] == "3"  # median of 4 us and 2 us
    raw = lines[1].split()
    assert raw[:2] == ["event=raft_stages_raw", "path=follower_append"]
    (sample,) = raw[2].removeprefix("samples=").split(";")
    stamps = dict(kv.split("=") for kv in sample.split(","))
    assert list(stamps)[:3] == ["start", "#index", "read"]
    assert (stamps["start"], stamps["#index"], stamps["read"]) == ("1000", "7", "5000")
    assert int(stamps["acked"]) > 5000


def test_stamp_outside_a_timed_request_does_nothing() -> None:
    stamp("routed")  # no sample published: no error, nothing to record
    assert CURRENT.get() is None
