"""The state store: one module per table area, ``store.py`` ties them together."""

from .store import StateStore, WriteTx
from .watch import Watch, WatchSet

__all__ = ["StateStore", "Watch", "WatchSet", "WriteTx"]
