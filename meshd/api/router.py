"""The router the route table is built into: each route wrapped with its ACL
rule (resolve the caller's token, run the rule's check, filter the answer),
the wait for the leader's establishment where a route needs the CA, and the
count of blocking queries in flight. ``Endpoint`` and ``Legacy`` are the two
kinds of row of meshd/api/routes.py ``ROUTES``."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..acl import ACLAuthorizer
from ..acl import request as acl_context
from ..acl.read_filters import ItemFilter
from ..http import AfterResponseHook, Handler, Request, Response, Route, Router
from ..metrics.recorder import Recorder
from .acl_rules import Rule, rule_for
from .common import FILTERED_HEADER

if TYPE_CHECKING:
    from .ports import AgentPorts

PortHandler = Callable[["AgentPorts", Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """One route: ``handler(ports, request)`` answers ``method path``;
    ``name`` labels its metrics; ``rule`` is its ACL rule."""

    method: str
    path: str
    handler: PortHandler
    name: str
    rule: Rule
    # Whether the route exists for these ports (decided when the router is
    # built, e.g. the UI's rows with ``ui_config.enabled``); None: always.
    enabled: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class Legacy:
    """A module still adding its routes with ``register(router, ports)``."""

    register: Callable[[Router, Any], None]


# How long a request arriving before the leader has established leadership
# (ACL bootstrap, CA initialisation; see meshd.agent.readiness) waits for it.
ESTABLISHMENT_WAIT = 5.0
# Routes that answer wrongly before the CA exists (with ACLs on every route waits).
NEEDS_CA = frozenset(
    {"agent.connect.ca.leaf", "agent.connect.ca.roots", "connect.ca.roots", "connect.ca.config"}
)


class WrappingRouter(Router):
    """A ``Router`` that wraps every handler on the way in: with ACL
    enforcement (every route must have a rule in ``acl_rules.RULES``, ACLs
    on or off, so no endpoint ships without one) and, with ``metrics``,
    counting blocking queries (``GET ?index=`` > 0) while they wait; wrapping
    the handler, unlike a before/after hook pair, also releases the count
    when the client goes away mid-wait."""

    def __init__(self, agent: AgentPorts, metrics: Recorder | None) -> None:
        super().__init__()
        self._agent = agent
        self._metrics = metrics

    def add(
        self, methods: str | Sequence[str], pattern: str, handler: Handler, *, name: str
    ) -> Route:
        method_list = [methods] if isinstance(methods, str) else list(methods)
        try:
            rules = {m.upper(): rule_for(name, m.upper()) for m in method_list}
        except KeyError:
            raise ValueError(f"route {name!r} {method_list} has no ACL rule in acl_rules") from None
        return self.add_ruled(methods, pattern, handler, name=name, rules=rules)

    def add_endpoint(self, ep: Endpoint) -> Route:
        handler = functools.partial(ep.handler, self._agent)
        return self.add_ruled(ep.method, ep.path, handler, name=ep.name, rules={ep.method: ep.rule})

    def add_ruled(
        self,
        methods: str | Sequence[str],
        pattern: str,
        handler: Handler,
        *,
        name: str,
        rules: dict[str, Rule],
    ) -> Route:
        wrapped = _enforce_acl(handler, self._agent, rules)
        if name in NEEDS_CA and not self._agent.acl.enabled:
            wrapped = _after_establishment(wrapped, self._agent)
        if self._metrics is not None:
            wrapped = _count_blocking(wrapped, self._metrics)
        return super().add(methods, pattern, wrapped, name=name)


def _enforce_acl(handler: Handler, agent: AgentPorts, rules: dict[str, Rule]) -> Handler:
    """Resolve the caller's token, run the route's checks, filter the answer."""
    if not agent.acl.enabled:
        return handler

    async def guarded(req: Request) -> Response:
        rule = rules.get(req.method) or rules.get("GET") or Rule()
        if rule.ignores_token:  # the UI's files, login: no token to wait for
            return await handler(req)
        # Right after an election the leader may not have created the
        # configured tokens yet: wait for it rather than answer "ACL not found".
        # (Asked first: the wait's cancel scope cost ~5 us on every request.)
        if not agent.initialized():
            await agent.wait_initialized(ESTABLISHMENT_WAIT)
        authz = await agent.acl.resolve(req.token)
        req.authz = authz
        # Before the check: reads it makes reach the servers with this token.
        acl_context.secret.set(agent.acl.effective_secret(req.token))
        if rule.check is not None:
            await rule.check(agent, req, authz)
        acl_context.current.set(authz)
        resp = await handler(req)
        if rule.response_filter is not None and resp.status == 200 and resp.body:
            resp = _filtered(resp, rule.response_filter, authz, req)
        return resp

    return guarded


def _after_establishment(handler: Handler, agent: AgentPorts) -> Handler:
    """``handler`` once the leader has established leadership (bounded wait)."""

    async def waiting(req: Request) -> Response:
        if not agent.initialized():
            await agent.wait_initialized(ESTABLISHMENT_WAIT)
        return await handler(req)

    return waiting


def _filtered(resp: Response, fn: ItemFilter, authz: ACLAuthorizer, req: Request) -> Response:
    value, dropped = fn(authz, json.loads(resp.body))
    out = Response.json(value, status=resp.status, pretty="pretty" in req.query)
    for key, val in resp.headers:
        if key.lower() not in ("content-length", "content-type"):
            out.set_header(key, val)
    if dropped:
        out.set_header(FILTERED_HEADER, "true")
    return out


def _count_blocking(handler: Handler, metrics: Recorder) -> Handler:
    async def counted(req: Request) -> Response:
        qs = req.query_string
        # No "index" in the raw query (nor an escape that could spell it):
        # not blocking, and no need to parse the query here.
        if ("index" not in qs and "%" not in qs) or req.query_value("index", "0") in ("", "0"):
            return await handler(req)
        with metrics.blocking_query("http"):
            return await handler(req)

    return counted


def record_request(metrics: Recorder) -> AfterResponseHook:
    def record(req: Request, resp: Response, seconds: float) -> None:
        metrics.http_request(req.route_name, req.method, resp.status, seconds)

    return record
