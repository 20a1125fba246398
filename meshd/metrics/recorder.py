"""The events meshd records, as an interface: ``Recorder`` records nothing.

A leaf module (it imports nothing of meshd), so that the RPC layer, DNS,
anti-entropy and the checks can take a ``Recorder`` without importing the
Prometheus implementation (``meshd.metrics.prometheus.Metrics``) or the agent.
The metric catalogue is in ``meshd.metrics.prometheus``.
"""

from __future__ import annotations

import contextlib

__all__ = ["NO_METRICS", "Recorder"]


class Recorder:
    """The events meshd records. This base class records nothing: it is the
    default wherever no agent's ``Metrics`` was passed (unit tests, tools).
    No method raises or blocks; all are cheap enough for hot paths."""

    def http_request(self, route: str | None, method: str, code: int, seconds: float) -> None:
        """One HTTP request answered (``route`` is the route name, None when none matched)."""

    def rpc_request(self, method: str, result: str, seconds: float) -> None:
        """One RPC request answered; ``result`` is "ok" or the RPC error code."""

    def blocking_query(self, via: str) -> contextlib.AbstractContextManager[None]:
        """Context manager held while one blocking query (via "http" or "rpc") waits."""
        return contextlib.nullcontext()

    def dns_query(self, query: bytes, reply: bytes | None) -> None:
        """One DNS query answered with ``reply`` (None: nothing was sent)."""

    def anti_entropy_sync(self, *, full: bool, ok: bool, seconds: float, writes: int) -> None:
        """One anti-entropy pass finished (``ok`` False: it failed and will retry)."""

    def check_result(self, kind: str, status: str, seconds: float) -> None:
        """One health check ran: ``kind`` as in ``meshd/checks`` ("http", "tcp", "ttl",
        ...), ``status`` "passing", "warning" or "critical", ``seconds`` the run's length."""

    def liveness_change(self, node: str, status: str) -> None:
        """The leader judged ``node`` to be ``status`` ("alive", "failed", "left"),
        a change from its previous verdict. ``node`` is not a label (unbounded)."""

    def raft_commit(self, seconds: float) -> None:
        """A proposal committed ``seconds`` after the leader accepted it."""

    def raft_apply(self, seconds: float) -> None:
        """One log entry took ``seconds`` to apply to the FSM."""


NO_METRICS = Recorder()
