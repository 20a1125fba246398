"""The one route table: every API module registers its routes here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import App, Router
from . import (
    agent,
    catalog,
    coordinate,
    event,
    health,
    kv,
    operator,
    session,
    snapshot,
    status,
    txn,
)
from .common import error_mapping

if TYPE_CHECKING:
    from ..agent.agent import Agent

MODULES = [agent, catalog, coordinate, event, health, kv, operator, session, snapshot, status, txn]


def build_router(agent_: Agent) -> Router:
    router = Router()
    for module in MODULES:
        module.register(router, agent_)
    return router


def build_app(agent_: Agent) -> App:
    return App(build_router(agent_), errors=error_mapping())
