"""L7 intentions: may this request from ``source`` reach ``destination``?

A pure core (no I/O, no clock) that decides one HTTP request the way
Consul's xDS translation makes Envoy's HTTP RBAC filter decide it
(agent/xds/rbac.go ``makeRBACRules`` with ``removeIntentionPrecedence``):

- The destination's source intentions are tried in Consul's precedence
  order (highest first); the first whose source matches the caller is the
  only one that applies. Lower-precedence intentions never see a caller a
  higher one matched: Consul subtracts the higher sources from them
  (``NotSources``).
- That intention without ``Permissions`` decides by its ``Action`` (L4).
- With ``Permissions``: they are tried top to bottom and the first that
  matches decides by its ``Action``. When none matches the request gets the
  default behaviour (``connect.default_intention_policy``), never a lower
  intention: Consul drops permissions whose action equals the default and
  the RBAC filter's own default answers the rest.
- No intention matches the caller: the default behaviour decides.

Paths are judged after normalisation (Consul turns on Envoy's
``normalize_path`` and ``merge_slashes``): ``/api/%2e%2e/admin`` is
``/admin``, ``//admin`` is ``/admin``. A path that cannot be normalised
(a malformed escape) is denied. PathExact / PathPrefix / PathRegex (RE2,
full match), Header (Present / Exact / Prefix / Suffix / Regex, Invert)
and Methods match as a service-router's matchers do (``connect.l7.match``).
Matching is case-sensitive on the path, as Envoy's.

``evaluate`` is shared by the proxy's inbound L7 path and ``meshd explain``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from connect.l7.entries_intentions import IntentionHTTPPermission, SourceIntention
from connect.l7.match import CompiledMatch, HTTPMatch, normalize_path
from connect.l7.request import Request

DEFAULT = "default"
WILDCARD = "*"
_ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class RbacDecision:
    """The outcome for one request.

    ``intention`` names the source intention that applied (its ``LegacyID``
    when it has one, else ``"<source> => <destination>"``), or ``"default"``
    when none matched the caller. ``permission`` is the index of the
    permission that decided, ``None`` for an L4 intention, the default
    behaviour, or an L7 intention none of whose permissions matched.
    """

    allowed: bool
    intention: str
    permission: int | None
    reason: str


def intention_label(source: SourceIntention, destination: str) -> str:
    """How logs, metrics and explain name a source intention."""
    legacy = source.extra.get("LegacyID")
    if isinstance(legacy, str) and legacy:
        return legacy
    # Consul's precedence of a source of the "*" entry is 4-6 (an exact
    # destination's 7-9): name that entry, not the one being decided.
    if 0 < source.precedence < 7:
        destination = WILDCARD
    return f"{source.name} => {destination}"


def source_matches(
    source: SourceIntention, name: str, namespace: str = DEFAULT, partition: str = DEFAULT
) -> bool:
    """Whether ``source`` (exact or ``*``) names the caller.

    A source from a peered cluster (``Peer``) never matches a local caller.
    """
    if source.peer:
        return False
    if source.name not in (name, WILDCARD):
        return False
    if (source.namespace or DEFAULT) not in (namespace or DEFAULT, WILDCARD):
        return False
    return (source.partition or DEFAULT) in (partition or DEFAULT, WILDCARD)


@lru_cache(maxsize=4096)
def compile_permission(http: IntentionHTTPPermission) -> CompiledMatch:
    """The permission's HTTP matcher, compiled once (RE2 regexes).

    Raises ``connect.l7.match.RouteMatchError`` for an invalid regex.
    """
    m = HTTPMatch(
        path_exact=http.path_exact,
        path_prefix=http.path_prefix,
        path_regex=http.path_regex,
        headers=http.header,
        methods=http.methods,
    )
    return CompiledMatch(m, "Permission")


def _default(allowed: bool, label: str, why: str) -> RbacDecision:
    policy = "allow" if allowed else "deny"
    return RbacDecision(
        allowed,
        label,
        None,
        f"{why}: default behavior configured by connect.default_intention_policy ({policy})",
    )


# The answer when no intention names the source (every request of a mesh
# without intentions): one record each, made once (RbacDecision is frozen).
_NO_MATCH = {a: _default(a, DEFAULT, "No intention matched") for a in (True, False)}


def evaluate(
    sources: Iterable[SourceIntention],
    request: Request,
    *,
    destination: str,
    source: str,
    default_allow: bool,
    source_namespace: str = DEFAULT,
    source_partition: str = DEFAULT,
) -> RbacDecision:
    """Decide ``request`` from ``source`` to ``destination``.

    ``sources`` are the destination's source intentions (those of its own
    service-intentions entry and of the ``*`` entry) ordered by Consul's
    precedence, highest first; ``default_allow`` is the default behaviour.
    The request's raw path is normalised here. Pure; raises nothing for a
    valid entry (an invalid PathRegex or header Regex, which validation
    refuses, denies the request).
    """
    path = normalize_path(request.path)
    if path is None:
        return RbacDecision(False, DEFAULT, None, "path cannot be normalized")
    for src in sources:
        if not source_matches(src, source, source_namespace, source_partition):
            continue
        label = intention_label(src, destination)
        if not src.permissions:
            allowed = src.action == _ALLOW
            return RbacDecision(
                allowed, label, None, f"Matched L4 intention {label} (Action: {src.action})"
            )
        for i, perm in enumerate(src.permissions):
            try:
                matched = compile_permission(perm.http).matches(request, path)
            except ValueError:
                return RbacDecision(False, label, i, f"permission {i} cannot be compiled")
            if matched:
                return RbacDecision(
                    perm.action == _ALLOW,
                    label,
                    i,
                    f"Matched L7 intention {label} permission {i} (Action: {perm.action})",
                )
        return _default(default_allow, label, f"No permission of L7 intention {label} matched")
    return _NO_MATCH[default_allow]


def order_sources(sources: Iterable[SourceIntention]) -> list[SourceIntention]:
    """``sources`` (of several entries, e.g. the destination's and ``*``'s) in
    Consul's precedence order, highest first; ties keep their order."""
    return sorted(sources, key=lambda s: -s.precedence)
