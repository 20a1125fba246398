"""/v1/txn endpoints (being written)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import Router

if TYPE_CHECKING:
    from ..agent.agent import Agent


def register(router: Router, agent: Agent) -> None:
    """Add this area's routes to the one route table."""
