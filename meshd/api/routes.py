"""The one route table: every API module registers its routes here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..http import AfterResponseHook, App, Handler, Request, Response, Route, Router
from ..metrics import Recorder, agent_metrics
from . import (
    agent,
    catalog,
    connect_ca,
    coordinate,
    event,
    health,
    intentions,
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

MODULES = [
    agent,
    catalog,
    connect_ca,
    coordinate,
    event,
    health,
    intentions,
    kv,
    operator,
    session,
    snapshot,
    status,
    txn,
]


class _MeteredRouter(Router):
    """A ``Router`` whose handlers report blocking queries (``GET ?index=`` > 0)
    to ``metrics`` while they wait. Wrapping the handler, unlike a before/after
    hook pair, also releases the count when the client goes away mid-wait."""

    def __init__(self, metrics: Recorder) -> None:
        super().__init__()
        self._metrics = metrics

    def add(
        self, methods: str | Sequence[str], pattern: str, handler: Handler, *, name: str
    ) -> Route:
        return super().add(methods, pattern, _count_blocking(handler, self._metrics), name=name)


def _count_blocking(handler: Handler, metrics: Recorder) -> Handler:
    async def counted(req: Request) -> Response:
        if not req.query_string or req.query_value("index", "0") in ("", "0"):
            return await handler(req)
        with metrics.blocking_query("http"):
            return await handler(req)

    return counted


def _record_request(metrics: Recorder) -> AfterResponseHook:
    def record(req: Request, resp: Response, seconds: float) -> None:
        metrics.http_request(req.route_name, req.method, resp.status, seconds)

    return record


def build_router(agent_: Agent, metrics: Recorder | None = None) -> Router:
    """Every API route; with ``metrics``, handlers count blocking queries."""
    router = Router() if metrics is None else _MeteredRouter(metrics)
    for module in MODULES:
        module.register(router, agent_)
    return router


def build_app(agent_: Agent) -> App:
    """The HTTP application of ``agent_``, recording into ``agent_.metrics``
    (created here until the agent creates it itself) every request, the
    blocking queries in flight, and the events of the agent's Raft node, RPC
    server and anti-entropy (see ``Metrics.instrument``)."""
    metrics = agent_metrics(agent_)
    metrics.instrument(agent_)
    app = App(build_router(agent_, metrics), errors=error_mapping())
    app.after_response(_record_request(metrics))
    return app
