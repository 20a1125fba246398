"""Moved to ``meshd.wire`` (below agent/ and api/, which both use it); this
name stays so that existing ``from .wire import ...`` imports keep working."""

from ..wire import CONSISTENCY_MODES, ReadOptions, ReadResult, WriteResult

__all__ = ["CONSISTENCY_MODES", "ReadOptions", "ReadResult", "WriteResult"]
