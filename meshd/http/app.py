"""The route table and the application object the HTTP server calls.

``Router`` is the API's one route table (CONVENTIONS habit 4): a segment trie
matched synchronously, no I/O. ``App`` wraps it with before-request hooks
(ACL checks later), after-response hooks (metrics, extra headers) and the
error mapping of ``meshd.http.errors``, so every exception becomes a response
in one place.

Patterns (Consul's paths, written with parameters instead of Go's prefix
patterns)::

    /v1/catalog/services                     static
    /v1/catalog/service/:service             one segment (may be empty, so the
                                             handler can answer Consul's
                                             "Missing service name")
    /v1/kv/*key                              the rest of the path, slashes
                                             included (may be empty)

On overlap a static segment beats ``:param``, which beats ``*rest``; if the
best match has no handler for the method the next one is tried, and only when
none has it the answer is 405. ``HEAD`` is served by a route's ``GET`` handler
(the server drops the body) and ``OPTIONS`` answers 200 with ``Allow``, as
Consul's ``wrap`` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from meshd.http.errors import (
    DEFAULT_ERROR_MAPPING,
    BadRequest,
    ErrorMapping,
    MethodNotAllowed,
    NotFound,
)
from meshd.http.message import Request, Response
from raft.stages import stamp

__all__ = [
    "AfterResponseHook",
    "App",
    "BeforeRequestHook",
    "Handler",
    "Route",
    "Router",
]

log = logging.getLogger("meshd.http")

Handler = Callable[[Request], Awaitable[Response]]
BeforeRequestHook = Callable[[Request], Awaitable[Response | None]]
AfterResponseHook = Callable[[Request, Response, float], None]

_METHOD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Modern Consul's catch-all (agent/http.go Index) answers unknown paths so.
_NOT_FOUND_API = "Invalid URL path: not a recognized HTTP API endpoint"
_NOT_FOUND_OTHER = (
    "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'"
)


@dataclass(frozen=True, slots=True)
class Route:
    """One registered (methods, pattern) -> handler entry; ``name`` labels metrics and logs."""

    methods: tuple[str, ...]
    pattern: str
    handler: Handler
    name: str


@dataclass(slots=True)
class _Node:
    static: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    param_name: str = ""
    rest_name: str = ""
    # method -> route, for a pattern ending here / ending with *rest here.
    routes: dict[str, Route] = field(default_factory=dict)
    rest_routes: dict[str, Route] = field(default_factory=dict)


def _normalize_methods(methods: str | Sequence[str]) -> tuple[str, ...]:
    items = (methods,) if isinstance(methods, str) else tuple(methods)
    if not items:
        raise ValueError("a route needs at least one method")
    for method in items:
        if not method or not set(method) <= _METHOD_CHARS:
            raise ValueError(f"invalid HTTP method {method!r} (use upper case, e.g. 'GET')")
    return items


def _split_pattern(pattern: str) -> list[str]:
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern {pattern!r} must start with '/'")
    segments = pattern[1:].split("/")
    for i, seg in enumerate(segments):
        if seg.startswith(("*", ":")) and len(seg) == 1:
            raise ValueError(f"route pattern {pattern!r}: parameter without a name")
        if seg.startswith("*") and i != len(segments) - 1:
            raise ValueError(f"route pattern {pattern!r}: '*{seg[1:]}' must be the last segment")
    return segments


class Router:
    """The route table: ``add`` routes, then ``resolve`` (method, path) -> (route, params).

    Matching is synchronous and allocation-light: one dict lookup for fully
    static paths, otherwise a walk down the segment trie.
    """

    def __init__(self) -> None:
        self._root = _Node()
        self._static: dict[str, dict[str, Route]] = {}
        self._routes: list[Route] = []
        self._names: dict[str, str] = {}

    def add(
        self,
        methods: str | Sequence[str],
        pattern: str,
        handler: Handler,
        *,
        name: str,
    ) -> Route:
        """Register ``handler`` for ``methods`` on ``pattern``; return the new ``Route``.

        Raises ``ValueError`` for a malformed pattern or method, a
        (method, pattern) pair registered twice, a parameter renamed at a
        position another pattern already uses, or a ``name`` already used by
        a different pattern.
        """
        method_tuple = _normalize_methods(methods)
        if not name:
            raise ValueError("a route needs a name")
        if self._names.setdefault(name, pattern) != pattern:
            raise ValueError(f"route name {name!r} already names {self._names[name]!r}")
        route = Route(method_tuple, pattern, handler, name)
        segments = _split_pattern(pattern)
        node = self._root
        table: dict[str, Route] | None = None
        for seg in segments:
            if seg.startswith("*"):
                node.rest_name = self._same_name(node.rest_name, seg[1:], pattern)
                table = node.rest_routes
                break
            if seg.startswith(":"):
                node.param_name = self._same_name(node.param_name, seg[1:], pattern)
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.static.setdefault(seg, _Node())
        if table is None:
            table = node.routes
        for method in method_tuple:
            if method in table:
                raise ValueError(f"{method} {pattern} is already registered")
        for method in method_tuple:
            table[method] = route
        if table is node.routes and not any(s[:1] in (":", "*") for s in segments):
            self._static[pattern] = table
        self._routes.append(route)
        return route

    @staticmethod
    def _same_name(existing: str, new: str, pattern: str) -> str:
        if existing and existing != new:
            raise ValueError(
                f"route pattern {pattern!r}: parameter {new!r} clashes with {existing!r} "
                "registered at the same position"
            )
        return new

    def routes(self) -> Iterator[Route]:
        """Every registered route, in registration order."""
        return iter(self._routes)

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """Find the route for ``method`` and ``path`` and its path parameters.

        Raises ``NotFound`` when no pattern matches the path and
        ``MethodNotAllowed`` (with ``Allow``) when patterns match but none
        accepts the method. ``HEAD`` falls back to ``GET``.
        """
        table = self._static.get(path)
        if table is not None:
            route = table.get(method) or (table.get("GET") if method == "HEAD" else None)
            if route is not None:
                return route, {}
        segments = path[1:].split("/") if path.startswith("/") else None
        if segments is not None:
            found = _first_static(self._root, segments, method)
            if found is not None:
                return found
        allowed: list[str] = []
        if segments is not None:
            for candidates, params in _candidates(self._root, segments, 0, ()):
                route = candidates.get(method)
                if route is None and method == "HEAD":
                    route = candidates.get("GET")
                if route is not None:
                    return route, dict(params)
                for m in candidates:
                    if m not in allowed:
                        allowed.append(m)
        if allowed:
            raise MethodNotAllowed(method, ["OPTIONS", *allowed])
        raise NotFound(_NOT_FOUND_API if "/v1/" in path else _NOT_FOUND_OTHER)


def _first_static(
    node: _Node, segments: list[str], method: str
) -> tuple[Route, dict[str, str]] | None:
    """The best match when it is found by walking static segments only, up to
    a ``*rest`` at a node with no ``:param`` (``/v1/kv/*key``): the first
    candidate ``_candidates`` would yield, without its generators. None when
    the walk needs anything else (the full search then decides)."""
    for i, seg in enumerate(segments):
        child = node.static.get(seg)
        if child is None:
            if node.param is not None or not node.rest_routes:
                return None
            route = node.rest_routes.get(method)
            if route is None:
                return None
            return route, {node.rest_name: "/".join(segments[i:])}
        node = child
    return None


def _candidates(
    node: _Node,
    segments: list[str],
    i: int,
    params: tuple[tuple[str, str], ...],
) -> Iterator[tuple[dict[str, Route], tuple[tuple[str, str], ...]]]:
    """Yield (method table, params) for every pattern matching ``segments[i:]``, best first."""
    if i == len(segments):
        if node.routes:
            yield node.routes, params
        return
    seg = segments[i]
    child = node.static.get(seg)
    if child is not None:
        yield from _candidates(child, segments, i + 1, params)
    if node.param is not None:
        yield from _candidates(node.param, segments, i + 1, (*params, (node.param_name, seg)))
    if node.rest_routes:
        yield node.rest_routes, (*params, (node.rest_name, "/".join(segments[i:])))


class App:
    """Router + hooks + error mapping: the object ``serve_http`` calls for every request.

    ``before_request`` hooks run in order after routing (so they can see
    ``request.route_name``); one returning a ``Response`` short-circuits the
    handler. ``after_response`` hooks get ``(request, response, seconds)``
    for every request, errors and 404s included, and may add headers; their
    own exceptions are logged and ignored. ``clock`` measures durations.
    """

    def __init__(
        self,
        router: Router,
        *,
        errors: ErrorMapping | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.router = router
        self.errors = errors if errors is not None else DEFAULT_ERROR_MAPPING
        self._clock = clock
        self._before: list[BeforeRequestHook] = []
        self._after: list[AfterResponseHook] = []
        # Request body limits of single routes, by (method, exact path), that
        # replace the server's ``max_body`` (a snapshot restore is far larger
        # than any other request).
        self.body_limits: dict[tuple[str, str], int] = {}

    def before_request(self, hook: BeforeRequestHook) -> BeforeRequestHook:
        """Add a before-request hook (usable as a decorator)."""
        self._before.append(hook)
        return hook

    def after_response(self, hook: AfterResponseHook) -> AfterResponseHook:
        """Add an after-response hook (usable as a decorator)."""
        self._after.append(hook)
        return hook

    async def handle(self, request: Request) -> Response:
        """Route, run hooks and the handler, and map any error to a response.

        Never raises ``Exception``: unmapped errors are logged with the
        request id and become 500 ``Internal error``. Cancellation (the
        client went away, or shutdown) propagates unchanged and skips the
        after-response hooks, since no response is sent.
        """
        start = self._clock()
        try:
            response = await self._dispatch(request)
        except Exception as exc:
            response = self._error_response(request, exc)
        if self._after:
            self._run_after(request, response, self._clock() - start)
        return response

    async def _dispatch(self, request: Request) -> Response:
        if request.bad_path:
            # Go keeps the raw bytes; decoding them with replacement would
            # make distinct paths (KV keys) alias, so refuse them.
            raise BadRequest("Invalid URL path: not valid UTF-8 once percent-decoded", "path")
        try:
            route, params = self.router.resolve(request.method, request.path)
        except MethodNotAllowed as exc:
            if request.method != "OPTIONS":
                raise
            # Consul's wrap(): OPTIONS on a known endpoint is 200 with Allow.
            return Response(200, list(exc.headers))
        request.path_params = params
        request.route_name = route.name
        for hook in self._before:
            early = await hook(request)
            if early is not None:
                return early
        stamp("routed")  # benchmarks only (raft/stages.py)
        return await route.handler(request)

    def _error_response(self, request: Request, exc: Exception) -> Response:
        try:
            response = self.errors.to_response(exc)
        except Exception:
            log.exception(
                "http error mapper failed request_id=%s method=%s path=%s",
                request.request_id,
                request.method,
                request.path,
            )
            response = None
        if response is None:
            log.error(
                "http handler failed request_id=%s method=%s path=%s route=%s",
                request.request_id,
                request.method,
                request.path,
                request.route_name,
                exc_info=exc,
            )
            return Response.text("Internal error", 500)
        return response

    def _run_after(self, request: Request, response: Response, elapsed: float) -> None:
        for hook in self._after:
            try:
                hook(request, response, elapsed)
            except Exception:
                log.exception("http after-response hook failed request_id=%s", request.request_id)
