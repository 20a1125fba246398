"""What crosses the RPC boundary between agents and servers.

Reads travel as ``ReadResult`` maps, writes as ``WriteResult`` maps; both are
plain msgpack-able data so a client agent never needs registry's record
types to decode an answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from registry import shapes
from registry.results import Result, TxnResponse

CONSISTENCY_MODES = ("default", "consistent", "stale")


class UnknownRead(KeyError):
    """No read with that name exists (a client/server version mismatch)."""


@dataclass(frozen=True)
class ReadOptions:
    index: int = 0
    wait: float = 300.0
    consistency: str = "default"  # one of CONSISTENCY_MODES
    max_stale: float = 0.0  # with "stale": forward to the leader if older than this (0 = any)

    def to_wire(self) -> dict[str, Any]:
        return {"i": self.index, "w": self.wait, "c": self.consistency, "ms": self.max_stale}

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> ReadOptions:
        mode = str(o.get("c", "default"))
        if mode not in CONSISTENCY_MODES:
            raise ValueError(f"unknown consistency mode {mode!r}")
        return cls(int(o.get("i", 0)), float(o.get("w", 300.0)), mode, float(o.get("ms", 0.0)))


@dataclass(frozen=True)
class ReadResult:
    """A read's answer with what Consul's X-Consul-* headers report."""

    value: Any
    index: int
    known_leader: bool
    last_contact: float  # seconds since the answering server heard from the leader
    consistency: str  # "leader", "consistent" or "stale" (X-Consul-Effective-Consistency)
    filtered: bool = False  # ACLs removed something (X-Consul-Results-Filtered-By-ACLs)
    # Set when ``value`` is an answer shared by the blocking queries one change
    # woke (read, arguments, applied index): the same key means the same
    # answer, so its encoding can be shared too. Never sent over the wire.
    shared: tuple[str, str, int] | None = field(default=None, compare=False)

    def to_wire(self) -> dict[str, Any]:
        return {
            "r": self.value,
            "i": self.index,
            "kl": self.known_leader,
            "lc": self.last_contact,
            "ec": self.consistency,
            "f": self.filtered,
        }

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> ReadResult:
        value, index, filtered = o.get("r"), int(o["i"]), bool(o.get("f"))
        return cls(value, index, bool(o["kl"]), float(o["lc"]), str(o["ec"]), filtered=filtered)


@dataclass(frozen=True)
class WriteResult:
    """A write's outcome: ``ok`` False with ``error`` None is Consul's plain
    ``false`` (a failed CAS or held lock); ``error`` names a registry
    ``ErrorCode`` otherwise."""

    ok: bool
    value: Any = None
    error: str | None = None
    message: str = ""
    index: int = 0  # the Raft index the write was applied at

    @classmethod
    def from_result(cls, result: Result, index: int) -> WriteResult:
        value = result.value
        if isinstance(value, TxnResponse):
            value = shapes.txn_response_json(value)
        return cls(
            result.ok, value, result.error.value if result.error else None, result.message, index
        )

    def to_wire(self) -> dict[str, Any]:
        return {"ok": self.ok, "v": self.value, "e": self.error, "m": self.message, "i": self.index}

    @staticmethod
    def wire_of(result: Result, index: int) -> dict[str, Any]:
        """``from_result(result, index).to_wire()`` without building the
        object in between: how a leader answers each forwarded write."""
        value = result.value
        if isinstance(value, TxnResponse):
            value = shapes.txn_response_json(value)
        error = result.error.value if result.error else None
        return {"ok": result.ok, "v": value, "e": error, "m": result.message, "i": index}

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> WriteResult:
        return cls(bool(o["ok"]), o.get("v"), o.get("e"), str(o.get("m", "")), int(o.get("i", 0)))
