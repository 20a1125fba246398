"""The interface an application state machine offers to raft/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class StateMachine(Protocol):
    """Applied by the driver in log order, from one task, never concurrently.

    ``apply`` must be deterministic: the same entries in the same order give
    the same state and the same results on every server. Domain errors are
    returned as values; an exception from ``apply`` means the log is corrupt
    and stops the node.
    """

    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed command and return its result."""
        ...

    def snapshot(self) -> bytes:
        """Serialize the whole state (called between applies)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's."""
        ...


class DecodedStateMachine(StateMachine, Protocol):
    """A state machine that can apply a command already decoded: the server
    that proposed it still holds the object it encoded, and applying that
    saves decoding the bytes again. Its result must equal ``apply``'s on the
    bytes (a command must decode to what was encoded)."""

    def apply_decoded(self, index: int, command: Any) -> Any:
        """Apply one committed command given as its decoded form."""
        ...


class SnapshotView(Protocol):
    """A state frozen at one moment, serialized in bounded steps."""

    def steps(self) -> Iterator[None]:
        """Serialize, yielding between steps of a few milliseconds each."""
        ...

    def result(self) -> bytes:
        """The snapshot bytes, once ``steps()`` is exhausted."""
        ...


class SnapshotViewMachine(StateMachine, Protocol):
    """A state machine that can freeze its state cheaply: the driver takes
    the view between applies and serializes it one step per scheduler round,
    so a large snapshot never stalls the event loop (nor its heartbeats)."""

    def snapshot_view(self) -> SnapshotView:
        """Freeze the state; serialized, it gives what ``snapshot`` would have."""
        ...
