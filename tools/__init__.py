"""Development tools run from a checkout, not shipped in the wheel.

- ``python -m tools.local_cluster DIR``: a cluster of real ``meshd agent``
  processes on loopback, also the e2e tests' and benchmarks' harness;
- ``python -m tools.raft_demo``: the Raft layer alone (three ``raft.kvserver``
  processes, a replicated counter, failover);
- ``tools.raft_cluster``: the ``raft.kvserver`` process cluster both use.

Run them from the repository root (``python -m`` puts it on ``sys.path``).
"""
