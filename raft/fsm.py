"""The interface an application state machine offers to raft/."""

from __future__ import annotations

from collections.abc import Callable
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


class SnapshotViewMachine(StateMachine, Protocol):
    """A state machine that can freeze its state cheaply: the driver takes
    the view between applies, on the event loop, and runs the returned
    serializer in a worker thread, so a large snapshot never stalls the loop."""

    def snapshot_view(self) -> Callable[[], bytes]:
        """Freeze the state; the result gives what ``snapshot`` would have."""
        ...
