"""ACL policy rules: the HCL and JSON forms parsed into a typed ``Policy``.

Follows Consul's rules language (developer.hashicorp.com/consul/docs/security/
acl/acl-rules and acl/policy.go). Everything that decides what a valid policy
is lives at the top of this file:

* segmented resources, each with an exact and a ``_prefix`` form taking one
  quoted label and a block: ``agent``, ``event``, ``key``, ``node``,
  ``query``, ``service`` (which also takes ``intentions``), ``session``;
* single-valued resources written ``name = "policy"``: ``acl``, ``keyring``,
  ``mesh``, ``operator``, ``peering``;
* policies ``read``, ``write``, ``deny``, and ``list`` for key rules only.

The HCL accepted is the subset ACL rules use (HCL1 semantics, so several
attributes may share a line and commas between them are optional):
``#``, ``//`` and ``/* */`` comments, quoted strings with JSON escapes,
blocks with one quoted label, and ``name = value`` attributes. Text whose
first character is ``{`` is JSON, as in Consul's HCL decoder. Both forms go
through one position-carrying tree, so every error names a line and column.

Unlike Consul, duplicate rules within one policy (two ``service "web"``
blocks) are rejected rather than silently combined, and labels must be
quoted strings.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import enum
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from meshd.acl.errors import RulesError

__all__ = [
    "MAX_RULES_BYTES",
    "Access",
    "Policy",
    "Resource",
    "Rule",
    "merge_policies",
    "parse_rules",
]

MAX_RULES_BYTES = 64 * 1024


class Access(enum.Enum):
    """A policy value. ``precedence`` orders them for merging (Consul's
    ``takesPrecedenceOver``: deny beats write beats list beats read)."""

    READ = "read"
    LIST = "list"
    WRITE = "write"
    DENY = "deny"

    @property
    def precedence(self) -> int:
        """1 for read up to 4 for deny; "no policy" counts as 0."""
        return _PRECEDENCE[self]


_PRECEDENCE = {Access.READ: 1, Access.LIST: 2, Access.WRITE: 3, Access.DENY: 4}


class Resource(enum.Enum):
    """What a rule or a permission is about (Consul's ``acl.Resource``)."""

    ACL = "acl"
    AGENT = "agent"
    EVENT = "event"
    INTENTION = "intention"
    KEY = "key"
    KEYRING = "keyring"
    MESH = "mesh"
    NODE = "node"
    OPERATOR = "operator"
    PEERING = "peering"
    QUERY = "query"
    SERVICE = "service"
    SESSION = "session"


# Rule name -> (resource, is prefix rule).
SEGMENTED: dict[str, tuple[Resource, bool]] = {
    f"{res.value}{suffix}": (res, suffix == "_prefix")
    for res in (
        Resource.AGENT,
        Resource.EVENT,
        Resource.KEY,
        Resource.NODE,
        Resource.QUERY,
        Resource.SERVICE,
        Resource.SESSION,
    )
    for suffix in ("", "_prefix")
}
SINGLE: dict[str, Resource] = {
    res.value: res
    for res in (Resource.ACL, Resource.KEYRING, Resource.MESH, Resource.OPERATOR, Resource.PEERING)
}
_RULE_NAMES = sorted([*SEGMENTED, *SINGLE])


@dataclass(frozen=True, slots=True)
class Rule:
    """One exact (``service "web"``) or prefix (``service_prefix "web"``) rule.

    ``intentions`` is only ever set on service rules; None means "derived from
    ``access``" as Consul does (read or write give intentions read).
    """

    resource: Resource
    name: str
    prefix: bool
    access: Access
    intentions: Access | None = None

    @property
    def rule_name(self) -> str:
        """The rules-language keyword, e.g. ``service_prefix``."""
        return self.resource.value + ("_prefix" if self.prefix else "")


def _rule_order(rule: Rule) -> tuple[str, bool, str]:
    return (rule.resource.value, rule.prefix, rule.name)


@dataclass(frozen=True, slots=True)
class Policy:
    """The typed rules of one ACL policy.

    ``rules`` is kept sorted (resource, prefix, name) so two policies with the
    same rules compare equal whatever order they were written in.
    ``datacenters`` scopes the policy as Consul's ``ACLPolicy.Datacenters``
    does: empty means valid everywhere.
    """

    rules: tuple[Rule, ...] = ()
    acl: Access | None = None
    keyring: Access | None = None
    mesh: Access | None = None
    operator: Access | None = None
    peering: Access | None = None
    datacenters: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.rules, key=_rule_order))
        if ordered != self.rules:
            object.__setattr__(self, "rules", ordered)

    def single(self, resource: Resource) -> Access | None:
        """The value of a single-valued resource (acl, keyring, mesh, operator,
        peering); raises KeyError for a segmented one."""
        if resource not in _SINGLE_FIELDS:
            raise KeyError(resource)
        value: Access | None = getattr(self, _SINGLE_FIELDS[resource])
        return value

    def applies_in(self, datacenter: str | None) -> bool:
        """Whether the policy is in force in ``datacenter`` (None: anywhere)."""
        return not self.datacenters or datacenter is None or datacenter in self.datacenters


_SINGLE_FIELDS = {res: res.value for res in SINGLE.values()}


def merge_policies(policies: Iterable[Policy]) -> Policy:
    """Combine several policies into one, as Consul's ``MergePolicies`` does.

    For the same resource, kind (exact or prefix) and name the value with the
    highest precedence wins: deny, then write, then list, then read. A service
    rule's ``intentions`` is merged separately by the same order, an unset one
    losing to any set one. The result has no datacenter scope.
    """
    singles: dict[Resource, Access | None] = dict.fromkeys(_SINGLE_FIELDS)
    merged: dict[tuple[Resource, bool, str], Rule] = {}
    for policy in policies:
        for resource in singles:
            singles[resource] = _stronger(singles[resource], policy.single(resource))
        for rule in policy.rules:
            key = (rule.resource, rule.prefix, rule.name)
            seen = merged.get(key)
            if seen is None:
                merged[key] = rule
                continue
            merged[key] = dataclasses.replace(
                seen,
                access=_stronger(seen.access, rule.access) or seen.access,
                intentions=_stronger(seen.intentions, rule.intentions),
            )
    return _make_policy(tuple(merged.values()), singles)


def _make_policy(rules: tuple[Rule, ...], singles: dict[Resource, Access | None]) -> Policy:
    return Policy(
        rules=rules,
        acl=singles.get(Resource.ACL),
        keyring=singles.get(Resource.KEYRING),
        mesh=singles.get(Resource.MESH),
        operator=singles.get(Resource.OPERATOR),
        peering=singles.get(Resource.PEERING),
    )


def _stronger(a: Access | None, b: Access | None) -> Access | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b.precedence >= a.precedence else a


# --- Tokens -------------------------------------------------------------------

_TokenKind = Literal["string", "ident", "number", "punct", "eof"]

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\n\f\ufeff]+)
  | (?P<comment>\#[^\n]*|//[^\n]*|/\*(?:[^*]|\*(?!/))*\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<punct>[{}\[\]=:,])
    """,
    re.VERBOSE,
)


_KEPT: dict[str, _TokenKind] = {
    "string": "string",
    "ident": "ident",
    "number": "number",
    "punct": "punct",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _TokenKind
    text: str
    offset: int


class _Source:
    """The rules text with a line index, to turn offsets into line/column."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of ``offset``."""
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def error(self, offset: int, reason: str) -> RulesError:
        """A RulesError located at ``offset``."""
        line, column = self.position(offset)
        return RulesError(reason, line, column)


def _tokenize(source: _Source) -> list[_Token]:
    text, pos, tokens = source.text, 0, []
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise source.error(pos, _bad_character(text, pos))
        kind = _KEPT.get(match.lastgroup or "")
        if kind is not None:
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("eof", "", len(text)))
    return tokens


def _bad_character(text: str, pos: int) -> str:
    if text.startswith("/*", pos):
        return "unterminated /* comment"
    if text[pos] == '"':
        return "unterminated string (strings end on the same line)"
    return f"unexpected character {json.dumps(text[pos])}"


# --- Position-carrying tree, shared by HCL and JSON ---------------------------

_NodeKind = Literal["object", "list", "string", "number", "bare"]


@dataclass(slots=True)
class _Node:
    kind: _NodeKind
    offset: int
    text: str = ""
    members: list[_Member] = dataclasses.field(default_factory=list)
    items: list[_Node] = dataclasses.field(default_factory=list)


@dataclass(slots=True)
class _Member:
    key: str
    quoted: bool
    offset: int
    value: _Node


def _describe(node: _Node) -> str:
    if node.kind == "object":
        return "a block"
    if node.kind == "list":
        return "a list"
    if node.kind == "string":
        return json.dumps(node.text, ensure_ascii=False)
    return node.text


class _Parser:
    """Recursive descent over the tokens. ``json`` mode requires ``:`` and
    commas; HCL mode takes ``=`` and optional commas."""

    def __init__(self, source: _Source, tokens: list[_Token], json_mode: bool) -> None:
        self.source = source
        self.tokens = tokens
        self.json_mode = json_mode
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, token: _Token, reason: str) -> RulesError:
        return self.source.error(token.offset, reason)

    def string(self, token: _Token) -> str:
        if "\\" not in token.text:
            return token.text[1:-1]
        try:
            value = json.loads(token.text, strict=False)
        except ValueError:
            raise self.fail(token, f"invalid escape sequence in string {token.text}") from None
        assert isinstance(value, str)
        return value

    def document(self) -> list[_Member]:
        if self.json_mode:
            root = self.value()
            if root.kind != "object":
                raise self.source.error(root.offset, "JSON rules must be an object")
            end = self.peek()
            if end.kind != "eof":
                raise self.fail(end, f"unexpected {_token_text(end)} after the JSON object")
            return root.members
        return self.body(opened_at=None)

    def body(self, opened_at: _Token | None) -> list[_Member]:
        members: list[_Member] = []
        while True:
            token = self.peek()
            if token.kind == "eof":
                if opened_at is None:
                    return members
                line, _ = self.source.position(opened_at.offset)
                raise self.fail(token, f'missing "}}" to close the block opened on line {line}')
            if token.text == "}" and token.kind == "punct":
                if opened_at is None:
                    raise self.fail(token, 'unexpected "}" with no block open')
                self.advance()
                return members
            members.append(self.item())
            if self.peek().text == "," and self.peek().kind == "punct":
                self.advance()

    def item(self) -> _Member:
        key = self.advance()
        if key.kind not in ("ident", "string"):
            raise self.fail(key, f"expected a rule or attribute name, got {_token_text(key)}")
        name = self.string(key) if key.kind == "string" else key.text
        labels: list[_Token] = []
        while self.peek().kind in ("string", "ident", "number"):
            labels.append(self.advance())
        after = self.peek()
        if len(labels) > 1:
            # ACL rules blocks take exactly one label (HCL would nest further ones).
            raise self.fail(labels[1], f"{name} takes one label, got {_token_text(labels[1])} too")
        if after.kind == "punct" and after.text == "=" and not labels:
            self.advance()
            return _Member(name, key.kind == "string", key.offset, self.value())
        if after.kind == "punct" and after.text == "{":
            self.advance()
            value = _Node("object", after.offset, members=self.body(opened_at=after))
            if labels:
                label = labels[0]
                quoted = label.kind == "string"
                text = self.string(label) if quoted else label.text
                value = _Node(
                    "object", label.offset, members=[_Member(text, quoted, label.offset, value)]
                )
            return _Member(name, key.kind == "string", key.offset, value)
        if labels:
            raise self.fail(
                after,
                f'expected "{{" after {name} {_token_text(labels[-1])}, got {_token_text(after)}',
            )
        raise self.fail(after, f'expected "=" or a block after {name}, got {_token_text(after)}')

    def value(self) -> _Node:
        token = self.advance()
        if token.kind == "string":
            return _Node("string", token.offset, text=self.string(token))
        if token.kind == "number":
            return _Node("number", token.offset, text=token.text)
        if token.kind == "ident":
            return _Node("bare", token.offset, text=token.text)
        if token.kind == "punct" and token.text == "{":
            if self.json_mode:
                return _Node("object", token.offset, members=self.json_members())
            return _Node("object", token.offset, members=self.body(opened_at=token))
        if token.kind == "punct" and token.text == "[":
            return _Node("list", token.offset, items=self.list_items())
        raise self.fail(token, f"expected a value, got {_token_text(token)}")

    def json_members(self) -> list[_Member]:
        # json.loads has already accepted the text, so this only builds the tree.
        members: list[_Member] = []
        while self.peek().text != "}":
            key = self.advance()
            self.advance()  # ":"
            members.append(_Member(self.string(key), True, key.offset, self.value()))
            if self.peek().text == ",":
                self.advance()
        self.advance()
        return members

    def list_items(self) -> list[_Node]:
        items: list[_Node] = []
        while not (self.peek().kind == "punct" and self.peek().text == "]"):
            if self.peek().kind == "eof":
                raise self.fail(self.peek(), 'missing "]" to close a list')
            items.append(self.value())
            if self.peek().kind == "punct" and self.peek().text == ",":
                self.advance()
        self.advance()
        return items


def _token_text(token: _Token) -> str:
    if token.kind == "eof":
        return "end of input"
    if token.kind == "punct":
        return f'"{token.text}"'
    return token.text


# --- Validation: tree -> Policy -----------------------------------------------


class _Builder:
    """Turns the parsed members into a Policy, rejecting what Consul would
    reject (and duplicates), each error at the offending token."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.singles: dict[Resource, tuple[Access | None, int]] = {}
        self.rules: dict[tuple[Resource, bool, str], tuple[Rule, int]] = {}

    def fail(self, offset: int, reason: str) -> RulesError:
        return self.source.error(offset, reason)

    def first_line(self, offset: int) -> int:
        return self.source.position(offset)[0]

    def build(self, members: list[_Member]) -> Policy:
        for member in members:
            if member.key in SINGLE:
                self.single(member)
            elif member.key in SEGMENTED:
                for entry in self.entries(member):
                    self.segment(member.key, entry)
            else:
                raise self.fail(member.offset, _unknown_rule(member.key))
        singles = {res: access for res, (access, _) in self.singles.items()}
        return _make_policy(tuple(rule for rule, _ in self.rules.values()), singles)

    def single(self, member: _Member) -> None:
        resource = SINGLE[member.key]
        if resource in self.singles:
            line = self.first_line(self.singles[resource][1])
            raise self.fail(member.offset, f'duplicate "{member.key}" rule (first on line {line})')
        # Consul allows these to be empty, meaning "not set".
        value = member.value
        access = (
            None
            if value.kind == "string" and value.text == ""
            else self.access(value, member.key, False)
        )
        self.singles[resource] = (access, member.offset)

    def entries(self, member: _Member) -> Iterator[_Member]:
        value = member.value
        nodes = value.items if value.kind == "list" else [value]
        for node in nodes:
            if node.kind != "object":
                raise self.fail(
                    node.offset,
                    f'{member.key} must be a block like {member.key} "name" {{ policy = "read" }}, '
                    f"got {_describe(node)}",
                )
            yield from node.members

    def segment(self, rule_name: str, entry: _Member) -> None:
        resource, prefix = SEGMENTED[rule_name]
        if not entry.quoted:
            raise self.fail(
                entry.offset, f"label of {rule_name} must be a quoted string, got {entry.key}"
            )
        what = f"{rule_name} {json.dumps(entry.key, ensure_ascii=False)}"
        if entry.value.kind != "object":
            raise self.fail(
                entry.value.offset, f"{what} must be a block, got {_describe(entry.value)}"
            )
        attrs = self.attributes(entry, what, resource is Resource.SERVICE)
        if "policy" not in attrs:
            raise self.fail(entry.offset, f"{what} has no policy")
        access = self.access(attrs["policy"], what, resource is Resource.KEY)
        assert access is not None
        intentions = None
        if "intentions" in attrs and not _is_empty(attrs["intentions"]):
            intentions = self.access(attrs["intentions"], f"intentions of {what}", False)
        key = (resource, prefix, entry.key)
        if key in self.rules:
            line = self.first_line(self.rules[key][1])
            raise self.fail(entry.offset, f"duplicate rule {what} (first on line {line})")
        self.rules[key] = (Rule(resource, entry.key, prefix, access, intentions), entry.offset)

    def attributes(self, entry: _Member, what: str, service: bool) -> dict[str, _Node]:
        allowed = ("policy", "intentions") if service else ("policy",)
        attrs: dict[str, _Node] = {}
        for attr in entry.value.members:
            if attr.key not in allowed:
                want = "policy or intentions" if service else "policy"
                raise self.fail(
                    attr.offset, f'unknown attribute "{attr.key}" in {what} (want {want})'
                )
            if attr.key in attrs:
                raise self.fail(attr.offset, f'duplicate attribute "{attr.key}" in {what}')
            attrs[attr.key] = attr.value
        return attrs

    def access(self, node: _Node, what: str, allow_list: bool) -> Access:
        want = "read, write, list or deny" if allow_list else "read, write or deny"
        if node.kind != "string":
            raise self.fail(
                node.offset, f"policy for {what} must be a quoted string, got {_describe(node)}"
            )
        try:
            access = Access(node.text)
        except ValueError:
            raise self.fail(
                node.offset, f"unknown policy {_describe(node)} for {what} (want {want})"
            ) from None
        if access is Access.LIST and not allow_list:
            raise self.fail(
                node.offset, f'policy "list" is only valid for key and key_prefix rules, not {what}'
            )
        return access


def _is_empty(node: _Node) -> bool:
    return node.kind == "string" and node.text == ""


def _unknown_rule(name: str) -> str:
    close = difflib.get_close_matches(name, _RULE_NAMES, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f'unknown rule type "{name}"{hint}'


def parse_rules(text: str) -> Policy:
    """Parse ACL rules in Consul's HCL or JSON form into a Policy.

    Text whose first non-blank character is ``{`` is read as JSON, anything
    else as HCL; empty text is an empty policy. Raises RulesError, with the
    line and column of the offending token, for text over 64 KiB, syntax
    errors, unknown rule types or attributes, bad or misplaced policy values,
    unquoted labels and duplicate rules.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_RULES_BYTES:
        raise RulesError(f"rules are {size} bytes, more than the {MAX_RULES_BYTES} allowed")
    source = _Source(text)
    json_mode = text.lstrip(" \t\r\n\ufeff").startswith("{")
    if json_mode:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise RulesError(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    members = _Parser(source, _tokenize(source), json_mode).document()
    return _Builder(source).build(members)
