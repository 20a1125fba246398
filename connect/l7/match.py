"""Route matching as Consul's service-router, on a normalised path.

Rules (Consul ``ServiceRouteHTTPMatch`` -> Envoy route match):

- Routes are tried in order; the first whose every matcher holds wins. A
  route with an empty match matches everything.
- Path: at most one of PathExact / PathPrefix / PathRegex, matched against
  the *normalised* path (``normalize_path``), never the raw one, so an
  encoded path (``/api/%2e%2e/admin``) cannot slip past a rule. Regexes are
  RE2 (``re2``) and must match the whole path, as Envoy's ``safe_regex``.
- Header: exactly one of Present / Exact / Prefix / Suffix / Regex (none given
  means Present); several values of one header are joined with ","; Invert
  flips the result, but an absent header only matches an inverted Present
  (Envoy's ``matchHeaders``: a missing header never satisfies ``!Exact``).
- QueryParam: one of Present / Exact / Regex on the first decoded value.
- Methods: the request method must be one of them (empty = any).
- PrefixRewrite replaces the matched PathPrefix (or the whole PathExact).
- Header modifiers apply Remove, then Add (appends), then Set (overwrites),
  the order Consul's xDS output gives Envoy.

``normalize_path`` is shared with L7 intentions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

# The matcher and modifier shapes are the config entries' own (one definition
# serves decoding and matching); re-exported here for the matching side.
from connect.l7.entries_http import HeaderMatch as HeaderMatch
from connect.l7.entries_http import HeaderModifiers as HeaderModifiers
from connect.l7.entries_http import QueryParamMatch as QueryParamMatch
from connect.l7.request import Headers, Request

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")


class RouteMatchError(ValueError):
    """A matcher that cannot be compiled (e.g. an invalid RE2 regex)."""


def compile_regex(pattern: str, what: str) -> Any:
    """Compile ``pattern`` with RE2; a one-line RouteMatchError naming ``what``."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RouteMatchError(f"{what} is not a valid regex: {reason}") from None


_LITERAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/-_~,;=&:@")


def literal_prefix(pattern: str) -> str:
    """A prefix every full match of ``pattern`` starts with ("" if unsure).

    Lets the matcher skip the RE2 call for paths that cannot match; only
    plain characters count, never one followed by a quantifier, and any
    alternation gives up.
    """
    if "|" in pattern:
        return ""
    end = 0
    while end < len(pattern) and pattern[end] in _LITERAL:
        end += 1
    if end < len(pattern) and pattern[end] in "?*{":
        end -= 1
    return pattern[: max(end, 0)]


class _Regex:
    """An RE2 full-match with a literal-prefix pre-check."""

    __slots__ = ("prefix", "regex")

    def __init__(self, pattern: str, what: str) -> None:
        self.regex = compile_regex(pattern, what)
        self.prefix = literal_prefix(pattern)

    def fullmatch(self, value: str) -> bool:
        if not value.startswith(self.prefix):
            return False
        return self.regex.fullmatch(value) is not None


def _decode_percents(path: str, unescape_slashes: bool) -> str | None:
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        ch = path[i]
        if ch != "%":
            out.append("/" if ch == "\\" else ch)
            i += 1
            continue
        hex2 = path[i + 1 : i + 3]
        if len(hex2) != 2 or not set(hex2) <= _HEX:
            return None  # Envoy rejects a malformed escape (400)
        decoded = chr(int(hex2, 16))
        if decoded in _UNRESERVED or (unescape_slashes and decoded in "/\\"):
            out.append("/" if decoded == "\\" else decoded)
        else:
            out.append("%" + hex2.upper())
        i += 3
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    segments = path.split("/")[1:]
    stack: list[str] = []
    for seg in segments:
        if seg == "..":
            if stack:
                stack.pop()
        elif seg != ".":
            stack.append(seg)
    trailing = segments[-1] in (".", "..") if segments else False
    result = "/" + "/".join(stack)
    if trailing and not result.endswith("/"):
        result += "/"
    return result


def normalize_path(
    raw: str, *, merge_slashes: bool = True, unescape_slashes: bool = False
) -> str | None:
    """RFC 3986 normalisation as Envoy's ``normalize_path`` + ``merge_slashes``.

    Decodes percent-escapes of unreserved characters (so ``%2e`` is ``.``),
    upper-cases the other escapes, turns ``\\`` into ``/``, resolves ``.`` and
    ``..`` segments (never above the root) and merges repeated slashes.
    ``%2F`` stays encoded unless ``unescape_slashes`` (Envoy's
    ``UNESCAPE_AND_FORWARD``). Returns None for a path Envoy rejects with 400
    (not starting with ``/`` or a malformed escape).
    """
    if not raw.startswith("/") and not raw.startswith("\\"):
        return None
    # Most paths have nothing to normalise: no escape, backslash, dot
    # segment (a "." or ".." segment follows a "/") or repeated slash.
    if (
        "%" not in raw
        and "\\" not in raw
        and "/." not in raw
        and (not merge_slashes or "//" not in raw)
    ):
        return raw
    return _normalize_full(raw, merge_slashes, unescape_slashes)


def _normalize_full(raw: str, merge_slashes: bool, unescape_slashes: bool) -> str | None:
    """``normalize_path`` without its shortcut (for a path starting with / or \\)."""
    decoded = _decode_percents(raw, unescape_slashes)
    if decoded is None:
        return None
    path = _remove_dot_segments(decoded)
    if merge_slashes:
        while "//" in path:
            path = path.replace("//", "/")
    return path


@dataclass(frozen=True)
class HTTPMatch:
    """Consul's ``ServiceRouteHTTPMatch``."""

    path_exact: str = ""
    path_prefix: str = ""
    path_regex: str = ""
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """One router route: a match and what the destination asks of the request.

    ``next_node`` is opaque to this module (the discovery chain's node key or
    a target id), resolved by ``connect.l7.decide``.
    """

    match: HTTPMatch = field(default_factory=HTTPMatch)
    next_node: str = ""
    prefix_rewrite: str = ""
    request_headers: HeaderModifiers = field(default_factory=HeaderModifiers)
    response_headers: HeaderModifiers = field(default_factory=HeaderModifiers)


def apply_header_modifiers(headers: Headers, mods: HeaderModifiers) -> Headers:
    """A copy of ``headers`` with Remove, then Add, then Set applied."""
    out = headers.copy()
    if mods.is_empty():
        return out
    for name in mods.remove:
        out.remove(name)
    for name, value in mods.add.items():
        out.add(name, value)
    for name, value in mods.set.items():
        out.set(name, value)
    return out


def rewrite_path(route: Route, path: str) -> str:
    """The normalised ``path`` after the route's PrefixRewrite (if any)."""
    if not route.prefix_rewrite:
        return path
    m = route.match
    if m.path_prefix and path.startswith(m.path_prefix):
        return route.prefix_rewrite + path[len(m.path_prefix) :]
    if m.path_exact and path == m.path_exact:
        return route.prefix_rewrite
    return path


def header_matches(m: HeaderMatch, headers: Headers, regex: _Regex | None = None) -> bool:
    """Whether ``headers`` satisfy ``m`` (Envoy's ``matchHeaders``).

    ``regex`` is ``m.regex`` compiled; without one a Regex matcher holds for
    any present value (how retry's ``retriable_headers`` use it).
    """
    value = headers.get(m.name)
    if value is None:  # Envoy: only an inverted Present matches an absent header
        return m.invert and not (m.exact or m.prefix or m.suffix or m.regex)
    if m.exact:
        result = value == m.exact
    elif m.prefix:
        result = value.startswith(m.prefix)
    elif m.suffix:
        result = value.endswith(m.suffix)
    elif regex is not None:
        result = regex.fullmatch(value)
    else:
        result = True  # Present (or no matcher at all)
    return result != m.invert


class _CompiledHeader:
    __slots__ = ("m", "regex")

    def __init__(self, m: HeaderMatch, where: str) -> None:
        self.m = m
        self.regex = _Regex(m.regex, where) if m.regex else None

    def matches(self, headers: Headers) -> bool:
        return header_matches(self.m, headers, self.regex)


class _CompiledQuery:
    __slots__ = ("m", "regex")

    def __init__(self, m: QueryParamMatch, where: str) -> None:
        self.m = m
        self.regex = _Regex(m.regex, where) if m.regex else None

    def matches(self, params: Mapping[str, list[str]]) -> bool:
        values = params.get(self.m.name)
        if not values:
            return False
        if self.m.exact:
            return values[0] == self.m.exact
        if self.regex is not None:
            return self.regex.fullmatch(values[0])
        return True


class CompiledMatch:
    """An ``HTTPMatch`` with its regexes compiled once."""

    __slots__ = ("headers", "m", "methods", "path_regex", "queries")

    def __init__(self, m: HTTPMatch, where: str = "Route") -> None:
        self.m = m
        self.path_regex = _Regex(m.path_regex, f"{where} PathRegex") if m.path_regex else None
        self.headers = tuple(
            _CompiledHeader(h, f"{where} Header[{i}] Regex") for i, h in enumerate(m.headers)
        )
        self.queries = tuple(
            _CompiledQuery(q, f"{where} QueryParam[{i}] Regex")
            for i, q in enumerate(m.query_params)
        )
        self.methods = frozenset(x.upper() for x in m.methods)

    def matches(self, request: Request, path: str) -> bool:
        """Whether ``request`` (its normalised ``path``) satisfies every matcher."""
        m = self.m
        if m.path_exact:
            if path != m.path_exact:
                return False
        elif m.path_prefix:
            if not path.startswith(m.path_prefix):
                return False
        elif self.path_regex is not None and not self.path_regex.fullmatch(path):
            return False
        if self.methods and request.method.upper() not in self.methods:
            return False
        for h in self.headers:
            if not h.matches(request.headers):
                return False
        if self.queries:
            params = request.query_params()
            for q in self.queries:
                if not q.matches(params):
                    return False
        return True


@dataclass(frozen=True)
class RouteResult:
    """The first matching route, its index and the paths seen and forwarded."""

    index: int
    route: Route
    path: str  # normalised path the match was made on
    forward_path: str  # after PrefixRewrite, without the query


class Router:
    """An ordered route table; ``match`` returns the first matching route."""

    __slots__ = ("_compiled", "merge_slashes", "routes", "unescape_slashes")

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        merge_slashes: bool = True,
        unescape_slashes: bool = False,
    ) -> None:
        self.routes = tuple(routes)
        self.merge_slashes = merge_slashes
        self.unescape_slashes = unescape_slashes
        self._compiled = tuple(
            CompiledMatch(r.match, f"Route[{i}]") for i, r in enumerate(self.routes)
        )

    def normalize(self, request: Request) -> str | None:
        return normalize_path(
            request.path,
            merge_slashes=self.merge_slashes,
            unescape_slashes=self.unescape_slashes,
        )

    def match(self, request: Request, path: str | None = None) -> RouteResult | None:
        """First matching route, or None (no route, or a path Envoy rejects)."""
        if path is None:
            path = self.normalize(request)
            if path is None:
                return None
        for i, compiled in enumerate(self._compiled):
            if compiled.matches(request, path):
                route = self.routes[i]
                return RouteResult(i, route, path, rewrite_path(route, path))
        return None
