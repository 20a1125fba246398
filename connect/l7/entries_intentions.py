"""``service-intentions`` config entries with L7 ``Permissions``.

Follows Consul's ServiceIntentionsConfigEntry
(agent/structs/config_entry_intentions.go). ``Precedence`` is read-only in
Consul: it is computed here from the source and destination names
(``Intention.UpdatePrecedence``) and any given value is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connect.l7.decode import (
    JSON,
    Fields,
    ValidationError,
    check_meta,
    finish_entry,
    goq,
    put,
    put_entry_tail,
)
from connect.l7.entries_http import (
    HeaderMatch,
    check_methods,
    check_paths,
    http_match_json,
    parse_header_match,
)

SERVICE_INTENTIONS = "service-intentions"
_ACTIONS = ("allow", "deny")
# SamenessGroup is kept as given; the Legacy* fields are the intentions
# API's (kept in stored entries, cleared or refused in written ones).
_SOURCE_PASSTHROUGH = (
    "SamenessGroup",
    "LegacyID",
    "LegacyMeta",
    "LegacyCreateTime",
    "LegacyUpdateTime",
)


@dataclass(frozen=True)
class IntentionHTTPPermission:
    path_exact: str = ""
    path_prefix: str = ""
    path_regex: str = ""
    header: tuple[HeaderMatch, ...] = ()
    methods: tuple[str, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        return http_match_json(
            self.path_exact, self.path_prefix, self.path_regex, self.header, self.methods
        )


@dataclass(frozen=True)
class IntentionPermission:
    action: str
    http: IntentionHTTPPermission

    def to_json(self) -> dict[str, JSON]:
        return {"Action": self.action, "HTTP": self.http.to_json()}


@dataclass(frozen=True)
class SourceIntention:
    name: str
    namespace: str = ""
    partition: str = ""
    peer: str = ""
    action: str = ""
    permissions: tuple[IntentionPermission, ...] = ()
    precedence: int = 0
    type: str = "consul"
    description: str = ""
    extra: dict[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Name": self.name}
        put(out, "Namespace", self.namespace)
        put(out, "Partition", self.partition)
        put(out, "Peer", self.peer)
        put(out, "Action", self.action)
        put(out, "Permissions", [p.to_json() for p in self.permissions])
        out["Precedence"] = self.precedence
        out["Type"] = self.type
        put(out, "Description", self.description)
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class ServiceIntentionsEntry:
    name: str
    sources: tuple[SourceIntention, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    partition: str = ""
    extra: dict[str, JSON] = field(default_factory=dict)
    kind: str = SERVICE_INTENTIONS

    def has_permissions(self) -> bool:
        return any(s.permissions for s in self.sources)

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Kind": self.kind, "Name": self.name}
        put(out, "Sources", [s.to_json() for s in self.sources])
        return put_entry_tail(out, self.meta, self.namespace, self.partition, self.extra)


def precedence(dest_ns: str, dest_name: str, src_ns: str, src_name: str) -> int:
    """Consul's ``Intention.UpdatePrecedence``: 9 exact/exact down to 1."""

    def exact(ns: str, name: str) -> int:
        if ns == "*":
            return 0
        return 1 if name == "*" else 2

    top = {2: 9, 1: 6, 0: 3}[exact(dest_ns or "default", dest_name)]
    return top - (2 - exact(src_ns or "default", src_name))


def _parse_http_permission(f: Fields, where: str) -> IntentionHTTPPermission:
    exact, prefix, regex = f.str("PathExact"), f.str("PathPrefix"), f.str("PathRegex")
    check_paths(exact, prefix, regex, f.path, where, sep=".")
    headers = tuple(
        parse_header_match(raw, f"{f.sub('Header')}[{j}]", f"{where}.Header[{j}]")
        for j, raw in enumerate(f.list("Header"))
    )
    perm = IntentionHTTPPermission(
        path_exact=exact,
        path_prefix=prefix,
        path_regex=regex,
        header=headers,
        methods=check_methods(f.str_list("Methods"), f.sub("Methods"), f"{where}.Methods"),
    )
    f.finish()
    if not (exact or prefix or regex or perm.header or perm.methods):
        raise ValidationError(f.path, f"{where} should not be empty")
    return perm


def _parse_permission(raw: JSON, path: str) -> IntentionPermission:
    f = Fields(raw, path)
    action = f.str("Action")
    http = f.obj("HTTP")
    f.finish(("JWT",))
    if action not in _ACTIONS:
        raise ValidationError(f.sub("Action"), f"{path}.Action must be set to 'allow' or 'deny'")
    if http is None:
        raise ValidationError(f.sub("HTTP"), f"{path}.HTTP is required")
    return IntentionPermission(action=action, http=_parse_http_permission(http, f.sub("HTTP")))


def _check_wildcards(name: str, field: str, where: str) -> None:
    if name != "*" and "*" in name:
        raise ValidationError(
            field, f"{where}Name: wildcard character '*' cannot be used with partial values"
        )


def _clear_legacy(extra: dict[str, JSON], f: Fields, path: str) -> None:
    """A written source loses LegacyID and the Legacy times (Consul's
    ``normalize``: a read entry can be written back); a non-empty
    LegacyMeta is refused, as Consul's ``Validate`` does (data loss)."""
    if extra.get("LegacyMeta"):
        raise ValidationError(f.sub("LegacyMeta"), f"{path}.LegacyMeta must be omitted")
    for legacy in _SOURCE_PASSTHROUGH[1:]:
        extra.pop(legacy, None)


def _parse_source(raw: JSON, i: int, dest: str, stored: bool) -> SourceIntention:
    path = f"Sources[{i}]"
    f = Fields(raw, path)
    src = SourceIntention(
        name=f.str("Name"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
        peer=f.str("Peer"),
        action=f.str("Action"),
        type=f.str("Type") or "consul",
        description=f.str("Description"),
    )
    raw_perms = f.list("Permissions")
    f.raw("Precedence")
    extra = f.finish(_SOURCE_PASSTHROUGH)
    if not src.name:
        raise ValidationError(f.sub("Name"), f"{path}.Name is required")
    _check_wildcards(src.name, f.sub("Name"), f"{path}.")
    if not stored:
        _clear_legacy(extra, f, path)
    if not raw_perms and src.action not in _ACTIONS:
        raise ValidationError(f.sub("Action"), f"{path}.Action must be set to 'allow' or 'deny'")
    if raw_perms and src.action:
        raise ValidationError(
            f.sub("Action"), f"{path}.Action must be omitted if Permissions are specified"
        )
    if raw_perms and dest == "*":
        raise ValidationError(
            f.sub("Permissions"),
            f"{path}.Permissions cannot be specified on intentions with wildcarded destinations",
        )
    if src.type != "consul":
        raise ValidationError(f.sub("Type"), f"{path}.Type must be set to 'consul'")
    perms = tuple(_parse_permission(p, f"{path}.Permissions[{j}]") for j, p in enumerate(raw_perms))
    prec = precedence("", dest, src.namespace, src.name)
    return SourceIntention(
        **{**src.__dict__, "permissions": perms, "precedence": prec, "extra": extra}
    )


def parse_service_intentions(f: Fields, *, stored: bool = False) -> ServiceIntentionsEntry:
    """Decode and validate a ``service-intentions`` entry (Kind already read).

    Sources come back ordered by precedence, highest first (Consul's Normalize).
    A written entry must omit the ``Legacy*`` fields of a source; a
    ``stored`` one (read back) may have them: the intentions API keeps an
    intention's ID, Meta and times there (Consul's ``legacyWrite``).
    """
    name = f.str("Name")
    if not name:
        raise ValidationError("Name", "Name is required")
    _check_wildcards(name, "Name", "")
    meta = f.str_map("Meta")
    check_meta(meta)
    raw_sources = f.list("Sources")
    if not raw_sources:
        raise ValidationError("Sources", "At least one source is required")
    sources = []
    seen: set[tuple[str, str, str]] = set()
    for i, raw in enumerate(raw_sources):
        s = _parse_source(raw, i, name, stored)
        key = (s.namespace or "default", s.name, s.peer)
        if key in seen:
            raise ValidationError(
                f"Sources[{i}]", f"Sources[{i}] defines {goq(s.name)} more than once"
            )
        seen.add(key)
        sources.append(s)
    sources.sort(key=lambda s: -s.precedence)
    entry = ServiceIntentionsEntry(
        name=name,
        sources=tuple(sources),
        meta=meta,
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
    )
    extra = finish_entry(f, ("JWT",))
    return ServiceIntentionsEntry(**{**entry.__dict__, "extra": extra})
