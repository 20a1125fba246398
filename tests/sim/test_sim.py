"""The deterministic Raft simulation: many seeded runs must keep every property, a seed must
replay exactly, and deliberately broken cores must be caught.

The linearizability checker's own self-test (it rejects known non-linearizable histories)
lives in test_linearizability.py; ``test_checker_self_test_exists`` only makes sure it
stays there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from raft.core import RaftCore
from raft.types import Message, MessageType, ReadState
from tests.sim import run, test_linearizability
from tests.sim.run import failure_line
from tests.sim.world import SimResult, run_seed

ROOT = Path(__file__).resolve().parents[2]
BATCHES = 6
SEEDS_PER_BATCH = 50  # 300 seeds in all, like `make sim`
# Seeds where, with reads answered without a quorum round, a client reads a stale value.
STALE_READ_SEEDS = (10, 22, 29)  # re-found when commit notices moved to the round end
SAFETY = {
    "election-safety",
    "log-matching",
    "leader-completeness",
    "state-machine-safety",
    "durable-state",
    "durable-commit",
    "acked-write-lost",
    "linearizability",
    "convergence",
}


def _failures(results: list[SimResult]) -> str:
    return "\n".join(failure_line(r, verbose=True) for r in results if not r.ok)


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(BATCHES))
def test_seeded_runs_keep_raft_safe_and_linearizable(batch: int) -> None:
    first = batch * SEEDS_PER_BATCH
    # Every third seed runs registry.fsm.RegistryFSM with real registry commands.
    seeds = range(first, first + SEEDS_PER_BATCH)
    results = list(run.run_many(seeds, {"fsm": "mixed"}, jobs=1))
    assert len(results) == SEEDS_PER_BATCH
    assert all(r.ok for r in results), _failures(results)


def test_a_seed_replays_exactly() -> None:
    first, second = run_seed(11), run_seed(11)
    assert first.trace_hash == second.trace_hash
    assert first.stats == second.stats
    assert (first.prop, first.detail) == (second.prop, second.detail)
    assert run_seed(12).trace_hash != first.trace_hash


def test_a_seed_replays_exactly_in_another_process_with_other_string_hashing() -> None:
    # Set iteration order of str depends on PYTHONHASHSEED; a run must not.
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "tests.sim.run", "--seed", "11", "--fsm", "kv"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert f"trace={run_seed(11).trace_hash}" in out.stdout, out.stdout + out.stderr


def test_runs_exercise_every_fault_and_feature() -> None:
    results = [run_seed(seed) for seed in range(24)]
    totals: Counter[str] = Counter()
    for r in results:
        totals.update(r.stats)
    expected = [
        "partitions",
        "asymmetric-partitions",
        "crashes",
        "crashes-armed",
        "restarts",
        "lost",
        "duplicated",
        "servers-added",
        "servers-removed",
        "transfers",
        "snapshots-installed",
        "background-writes",
        "elections",
        "ops-ok",
        "ops-indeterminate",
        "ops-lease",
    ]
    assert {name: totals[name] for name in expected if totals[name] == 0} == {}
    assert {r.nodes for r in results} == {3, 5}


def test_a_core_that_grants_every_vote_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def grant_everything(self: RaftCore, m: Message) -> None:
        resp = MessageType.VOTE_RESP if m.type == MessageType.VOTE else MessageType.PREVOTE_RESP
        self._send(Message(resp, self.id, m.src, m.term))
        if m.type == MessageType.VOTE:
            self.vote = m.src

    monkeypatch.setattr(RaftCore, "_handle_vote_request", grant_everything)
    caught = [r for r in (run_seed(seed) for seed in range(6)) if not r.ok]
    assert caught, "no seed noticed a core that votes for every candidate"
    assert {r.prop for r in caught} <= SAFETY, _failures(caught)


def test_reads_served_without_confirming_leadership_are_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def read_index_at_once(self: RaftCore, context: bytes) -> None:
        self._check_leader()  # no heartbeat round, no wait for a commit in this term
        self.read_states.append(ReadState(self.log.commit, context))

    monkeypatch.setattr(RaftCore, "read_index", read_index_at_once)
    results = [run_seed(seed) for seed in STALE_READ_SEEDS]
    assert any(r.prop == "linearizability" for r in results), [r.prop for r in results]


def test_a_leader_counting_its_unwritten_log_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    advance = RaftCore.advance

    def advance_as_if_written(self: RaftCore, rd: object, *, persisted: bool = True) -> None:
        advance(self, rd, persisted=True)  # type: ignore[arg-type]

    monkeypatch.setattr(RaftCore, "advance", advance_as_if_written)
    results = [run_seed(seed) for seed in range(8)]
    assert any(r.prop == "durable-commit" for r in results), [r.prop for r in results]


def test_checker_self_test_exists() -> None:
    rejecting = [name for name in dir(test_linearizability) if name.endswith("_is_rejected")]
    assert "test_stale_read_after_completed_put_is_rejected" in rejecting


def test_cli_prints_one_summary_line_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--seeds", "2", "--seed-start", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == ["sim: 2 seeds, 0 failures"]


def test_cli_names_failing_seeds_and_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(self: RaftCore, m: Message) -> None:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(RaftCore, "_handle_vote_request", refuse)
    assert run.main(["--seeds", "2", "--seed-start", "0"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "sim: 2 seeds, 2 failures"
    assert lines[0].startswith("seed=0 property=exception detail=RuntimeError: broken on purpose")


def test_registry_fsm_runs_under_the_same_chaos() -> None:
    """Registry commands (KV sets, catalog registrations) go through crashes,
    partitions and InstallSnapshot and the history stays linearizable."""
    results = [run.run_one(seed, {"fsm": "registry"}) for seed in (2, 5, 8)]
    assert all(r.ok for r in results), _failures(results)
    assert sum(r.stats.get("ops-ok", 0) for r in results) > 0, [r.stats for r in results]
    assert sum(r.stats.get("snapshots-installed", 0) for r in results) > 0
