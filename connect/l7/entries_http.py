"""HTTP pieces shared by service-router and service-intentions entries:
header matches, header modifiers, methods and path checks.

Texts follow Consul's agent/structs/config_entry_discoverychain.go and
config_entry_intentions.go; ``where`` is the prefix Consul puts in front
(``Route[0]`` or ``Sources[0].Permissions[0].HTTP``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connect.l7.decode import JSON, Fields, ValidationError, goq, put

VALID_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")


@dataclass(frozen=True)
class HeaderMatch:
    """``{Name, Present, Exact, Prefix, Suffix, Regex, Invert}``."""

    name: str
    present: bool = False
    exact: str = ""
    prefix: str = ""
    suffix: str = ""
    regex: str = ""
    invert: bool = False

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Name": self.name}
        put(out, "Present", self.present)
        put(out, "Exact", self.exact)
        put(out, "Prefix", self.prefix)
        put(out, "Suffix", self.suffix)
        put(out, "Regex", self.regex)
        put(out, "Invert", self.invert)
        return out


@dataclass(frozen=True)
class QueryParamMatch:
    name: str
    present: bool = False
    exact: str = ""
    regex: str = ""

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Name": self.name}
        put(out, "Present", self.present)
        put(out, "Exact", self.exact)
        put(out, "Regex", self.regex)
        return out


def http_match_json(
    path_exact: str,
    path_prefix: str,
    path_regex: str,
    header: tuple[HeaderMatch, ...],
    methods: tuple[str, ...],
    query_param: tuple[QueryParamMatch, ...] = (),
) -> dict[str, JSON]:
    """A router's ``Match.HTTP`` or an intention permission's ``HTTP`` (which
    has no QueryParam), empty fields left out."""
    out: dict[str, JSON] = {}
    put(out, "PathExact", path_exact)
    put(out, "PathPrefix", path_prefix)
    put(out, "PathRegex", path_regex)
    put(out, "Header", [h.to_json() for h in header])
    put(out, "QueryParam", [q.to_json() for q in query_param])
    put(out, "Methods", list(methods))
    return out


def parse_header_match(raw: JSON, path: str, where: str) -> HeaderMatch:
    """Decode one header matcher; ``where`` is e.g. ``Route[0] Header[1]``."""
    f = Fields(raw, path)
    hm = HeaderMatch(
        name=f.str("Name"),
        present=f.bool("Present"),
        exact=f.str("Exact"),
        prefix=f.str("Prefix"),
        suffix=f.str("Suffix"),
        regex=f.str("Regex"),
        invert=f.bool("Invert"),
    )
    f.finish()
    if not hm.name:
        raise ValidationError(path + ".Name", f"{where} missing required Name field")
    count = sum(bool(x) for x in (hm.present, hm.exact, hm.prefix, hm.suffix, hm.regex))
    if count != 1:
        raise ValidationError(
            path, f"{where} should only contain one of Present, Exact, Prefix, Suffix, or Regex"
        )
    return hm


@dataclass(frozen=True)
class HeaderModifiers:
    """``{Add: {k: v}, Set: {k: v}, Remove: [k]}``: Add appends, Set overwrites."""

    add: dict[str, str] = field(default_factory=dict)
    set: dict[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.add or self.set or self.remove)

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put(out, "Add", dict(self.add))
        put(out, "Set", dict(self.set))
        put(out, "Remove", list(self.remove))
        return out

    def merge_parent(self, parent: HeaderModifiers, child_wins: bool) -> HeaderModifiers:
        """Combine with a parent splitter's modifiers (Consul's ``MergeParent``)."""
        first, second = (parent, self) if child_wins else (self, parent)
        return HeaderModifiers(
            add={**first.add, **second.add},
            set={**first.set, **second.set},
            remove=tuple(dict.fromkeys((*first.remove, *second.remove))),
        )


def parse_header_modifiers(f: Fields, name: str) -> HeaderModifiers:
    sub = f.obj(name)
    if sub is None:
        return HeaderModifiers()
    mods = HeaderModifiers(
        add=sub.str_map("Add"), set=sub.str_map("Set"), remove=sub.str_list("Remove")
    )
    sub.finish()
    return mods


def check_methods(methods: tuple[str, ...], path: str, where: str) -> tuple[str, ...]:
    """Upper-case, refuse unknown and duplicate methods (Consul texts)."""
    seen: list[str] = []
    for m in methods:
        up = m.upper()
        if up not in VALID_METHODS:
            raise ValidationError(path, f"{where} contains an invalid method {goq(up)}")
        if up in seen:
            raise ValidationError(path, f"{where} contains {goq(up)} more than once")
        seen.append(up)
    return tuple(seen)


def check_paths(exact: str, prefix: str, regex: str, path: str, where: str, sep: str = " ") -> None:
    """At most one of PathExact/PathPrefix/PathRegex; the first two start with '/'."""
    if sum(bool(x) for x in (exact, prefix, regex)) > 1:
        raise ValidationError(
            path, f"{where} should only contain at most one of PathExact, PathPrefix, or PathRegex"
        )
    for name, value in (("PathExact", exact), ("PathPrefix", prefix)):
        if value and not value.startswith("/"):
            raise ValidationError(
                f"{path}.{name}", f"{where}{sep}{name} doesn't start with '/': {goq(value)}"
            )
