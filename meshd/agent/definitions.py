"""The definitions moved to meshd.defs.definitions; bench/ still imports
``parse_check`` and ``parse_service`` from here."""

from __future__ import annotations

from ..defs.definitions import parse_check, parse_service

__all__ = ["parse_check", "parse_service"]
