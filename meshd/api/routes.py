"""The one route table: every API module registers its routes here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import App, Router
from . import catalog
from .common import error_mapping

if TYPE_CHECKING:
    from ..agent.agent import Agent

MODULES = [catalog]


def build_router(agent: Agent) -> Router:
    router = Router()
    for module in MODULES:
        module.register(router, agent)
    return router


def build_app(agent: Agent) -> App:
    return App(build_router(agent), errors=error_mapping())
