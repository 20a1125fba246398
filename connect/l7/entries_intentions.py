"""``service-intentions`` config entries with L7 ``Permissions``.

Follows Consul's ServiceIntentionsConfigEntry
(agent/structs/config_entry_intentions.go). ``Precedence`` is read-only in
Consul: it is computed here from the source and destination names
(``Intention.UpdatePrecedence``) and any given value is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connect.l7.decode import JSON, Fields, ValidationError, check_meta, goq, put
from connect.l7.entries_http import HeaderMatch, check_methods, check_paths, parse_header_match

SERVICE_INTENTIONS = "service-intentions"
_ACTIONS = ("allow", "deny")


@dataclass(frozen=True)
class IntentionHTTPPermission:
    path_exact: str = ""
    path_prefix: str = ""
    path_regex: str = ""
    header: tuple[HeaderMatch, ...] = ()
    methods: tuple[str, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put(out, "PathExact", self.path_exact)
        put(out, "PathPrefix", self.path_prefix)
        put(out, "PathRegex", self.path_regex)
        put(out, "Header", [h.to_json() for h in self.header])
        put(out, "Methods", list(self.methods))
        return out


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
        put(out, "Meta", dict(self.meta))
        put(out, "Namespace", self.namespace)
        put(out, "Partition", self.partition)
        out.update(self.extra)
        return out


def precedence(dest_ns: str, dest_name: str, src_ns: str, src_name: str) -> int:
    """Consul's ``Intention.UpdatePrecedence``: 9 exact/exact down to 1."""

    def exact(ns: str, name: str) -> int:
        if ns == "*":
            return 0
        return 1 if name == "*" else 2

    top = {2: 9, 1: 6, 0: 3}[exact(dest_ns or "default", dest_name)]
    return top - (2 - exact(src_ns or "default", src_name))


def _parse_http_permission(f: Fields, where: str) -> IntentionHTTPPermission:
    headers = tuple(
        parse_header_match(raw, f"{f.sub('Header')}[{j}]", f"{where}.Header[{j}]")
        for j, raw in enumerate(f.list("Header"))
    )
    perm = IntentionHTTPPermission(
        path_exact=f.str("PathExact"),
        path_prefix=f.str("PathPrefix"),
        path_regex=f.str("PathRegex"),
        header=headers,
        methods=check_methods(f.str_list("Methods"), f.sub("Methods"), f"{where}.Methods"),
    )
    f.finish()
    if not (perm.path_exact or perm.path_prefix or perm.path_regex or perm.header or perm.methods):
        raise ValidationError(f.path, f"{where} should not be empty")
    check_paths(perm.path_exact, perm.path_prefix, perm.path_regex, f.path, where, sep=".")
    return perm


def _parse_permission(raw: JSON, path: str) -> IntentionPermission:
    f = Fields(raw, path)
    action = f.str("Action").lower()
    http = f.obj("HTTP")
    f.finish(("JWT",))
    if action not in _ACTIONS:
        raise ValidationError(f.sub("Action"), f"{path}.Action must be set to 'allow' or 'deny'")
    if http is None:
        raise ValidationError(f.sub("HTTP"), f"{path}.HTTP is required")
    return IntentionPermission(action=action, http=_parse_http_permission(http, f.sub("HTTP")))


def _parse_source(raw: JSON, i: int, dest: str) -> SourceIntention:
    path = f"Sources[{i}]"
    f = Fields(raw, path)
    src = SourceIntention(
        name=f.str("Name"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
        peer=f.str("Peer"),
        action=f.str("Action").lower(),
        permissions=tuple(
            _parse_permission(p, f"{path}.Permissions[{j}]")
            for j, p in enumerate(f.list("Permissions"))
        ),
        type=f.str("Type") or "consul",
        description=f.str("Description"),
    )
    f.raw("Precedence")
    extra = f.finish(
        ("SamenessGroup", "LegacyID", "LegacyMeta", "LegacyCreateTime", "LegacyUpdateTime")
    )
    if not src.name:
        raise ValidationError(f.sub("Name"), f"{path}.Name is required")
    if src.type != "consul":
        raise ValidationError(f.sub("Type"), f"{path}.Type must be set to 'consul'")
    if src.permissions:
        if src.action:
            raise ValidationError(
                f.sub("Action"), f"{path}.Action must be omitted if Permissions are specified"
            )
        if dest == "*":
            raise ValidationError(
                f.sub("Permissions"),
                f"{path}.Permissions cannot be specified on intentions "
                "with wildcarded destinations",
            )
    elif src.action not in _ACTIONS:
        raise ValidationError(f.sub("Action"), f"{path}.Action must be set to 'allow' or 'deny'")
    prec = precedence("", dest, src.namespace, src.name)
    return SourceIntention(**{**src.__dict__, "precedence": prec, "extra": extra})


def parse_service_intentions(f: Fields) -> ServiceIntentionsEntry:
    """Decode and validate a ``service-intentions`` entry (Kind already read)."""
    name = f.str("Name")
    sources = tuple(_parse_source(raw, i, name) for i, raw in enumerate(f.list("Sources")))
    entry = ServiceIntentionsEntry(
        name=name,
        sources=sources,
        meta=f.str_map("Meta"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
    )
    extra = f.finish(("JWT", "CreateIndex", "ModifyIndex"))
    extra.pop("CreateIndex", None)
    extra.pop("ModifyIndex", None)
    if not name:
        raise ValidationError("Name", "Name is required")
    if not sources:
        raise ValidationError("Sources", "At least one source is required")
    seen: set[tuple[str, str, str]] = set()
    for i, s in enumerate(sources):
        key = (s.namespace or "default", s.name, s.peer)
        if key in seen:
            raise ValidationError(
                f"Sources[{i}]", f"Sources[{i}] defines {goq(s.name)} more than once"
            )
        seen.add(key)
    check_meta(entry.meta)
    return ServiceIntentionsEntry(**{**entry.__dict__, "extra": extra})
