"""ACL tables: tokens (by AccessorID and SecretID), policies and roles (by ID and name).

Writes follow Consul's state/acl.go batch semantics: a batch is all or
nothing; secrets and names are unique; a token or role may only link
policies (and roles) that exist; the builtin global-management policy cannot
be deleted. Link names are resolved at read time, so a renamed policy shows
its new name and a deleted one disappears from the links (as Consul does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..commands import (
    ACLAuthMethodSet,
    ACLBindingRuleSet,
    ACLBootstrap,
    ACLPolicySet,
    ACLRoleSet,
    ACLTokenSet,
)
from ..errors import ErrorCode
from ..records import ACLAuthMethod, ACLBindingRule, ACLLink, ACLPolicy, ACLRole, ACLToken
from ..results import OK, Result, failed
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore, WriteTx

GLOBAL_MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"
# The index-table entry recording the raft index of the last ACL bootstrap
# (Consul's "acl-token-bootstrap" sentinel); absent until the first one.
BOOTSTRAP_INDEX = "acl-token-bootstrap"


ACLRecord = ACLToken | ACLPolicy | ACLRole | ACLAuthMethod | ACLBindingRule


class ACLTables:
    """Tokens, policies, roles, auth methods and binding rules with their
    lookup indexes."""

    def __init__(self) -> None:
        self.tokens: Table[ACLToken] = Table(
            "acl_tokens",
            ACLToken,
            lambda t: t.accessor_id,
            {"secret": lambda t: (t.secret_id,)},
        )
        self.policies: Table[ACLPolicy] = Table(
            "acl_policies", ACLPolicy, lambda p: p.id, {"name": lambda p: (p.name,)}
        )
        self.roles: Table[ACLRole] = Table(
            "acl_roles", ACLRole, lambda r: r.id, {"name": lambda r: (r.name,)}
        )
        self.auth_methods: Table[ACLAuthMethod] = Table(
            "acl_auth_methods", ACLAuthMethod, lambda m: m.name, {}
        )
        self.binding_rules: Table[ACLBindingRule] = Table(
            "acl_binding_rules",
            ACLBindingRule,
            lambda b: b.id,
            {"method": lambda b: (b.auth_method,)},
        )

    def tables(self) -> list[Table[Any]]:
        """Tables in snapshot order."""
        return [self.tokens, self.policies, self.roles, self.auth_methods, self.binding_rules]


T = TypeVar("T", ACLToken, ACLRole)
R = TypeVar("R", ACLToken, ACLPolicy, ACLRole, ACLAuthMethod, ACLBindingRule)


def _resolve(store: StateStore, item: T) -> T:
    """Refresh link names from the current policies/roles; drop dangling links."""

    def fix(
        links: tuple[ACLLink, ...], table: Table[ACLPolicy] | Table[ACLRole]
    ) -> tuple[ACLLink, ...]:
        out = []
        for link in links:
            target = table.get(link.id)
            if target is not None:
                out.append(link if target.name == link.name else ACLLink(link.id, target.name))
        return tuple(out)

    policies = fix(item.policies, store.acl.policies)
    if isinstance(item, ACLToken):
        roles = fix(item.roles, store.acl.roles)
        if policies == item.policies and roles == item.roles:
            return item
        return replace(item, policies=policies, roles=roles)
    return item if policies == item.policies else replace(item, policies=policies)


def _idx(store: StateStore, ws: WatchSet | None, name: str) -> int:
    store.watch(ws, name)
    return max(1, store.index_of(name))


@dataclass(frozen=True)
class ACLKind(Generic[R]):
    """One ACL table as writes and reads use it; the same CRUD serves every kind."""

    label: str  # as Consul's messages name it ("Policy")
    table: Callable[[ACLTables], Table[R]]
    index: str  # the index entry writes touch and reads watch
    name: Callable[[R], str] | None = None  # a unique name, kept in the "name" index
    protected: Mapping[str, str] = field(default_factory=dict)  # key -> why it stays
    resolve: Callable[[StateStore, R], R] | None = None  # link names fixed at read time

    def conflict(self, table: Table[R], record: R) -> Result | None:
        """Consul's error when another record already holds ``record``'s name."""
        if self.name is None:
            return None
        name = self.name(record)
        for other in table.by("name", name).values():
            if table.pk(other) != table.pk(record):
                text = f"Invalid {self.label}: A {self.label} with Name {name!r} already exists"
                return failed(ErrorCode.CONFLICT, text)
        return None

    def _fixed(self, store: StateStore, record: R | None) -> R | None:
        if record is None or self.resolve is None:
            return record
        return self.resolve(store, record)

    def get(self, store: StateStore, ws: WatchSet | None, key: str) -> tuple[int, R | None]:
        """A record by primary key."""
        idx = _idx(store, ws, self.index)
        return idx, self._fixed(store, self.table(store.acl).get(key))

    def first(
        self, store: StateStore, ws: WatchSet | None, index: str, value: str
    ) -> tuple[int, R | None]:
        """The record filed under ``value`` in the unique secondary ``index``."""
        idx = _idx(store, ws, self.index)
        found = next(iter(self.table(store.acl).by(index, value).values()), None)
        return idx, self._fixed(store, found)

    def by_name(self, store: StateStore, ws: WatchSet | None, name: str) -> tuple[int, R | None]:
        """A record by its unique name."""
        return self.first(store, ws, "name", name)

    def list(self, store: StateStore, ws: WatchSet | None) -> tuple[int, list[R]]:
        """Every record, by primary key."""
        idx = _idx(store, ws, self.index)
        records = self.table(store.acl).sorted_records()
        if self.resolve is not None:
            records = [self.resolve(store, r) for r in records]
        return idx, records


TOKENS: ACLKind[ACLToken] = ACLKind("Token", lambda t: t.tokens, "acl-tokens", resolve=_resolve)
POLICIES: ACLKind[ACLPolicy] = ACLKind(
    "Policy",
    lambda t: t.policies,
    "acl-policies",
    name=lambda p: p.name,
    protected={
        GLOBAL_MANAGEMENT_POLICY_ID: (
            "Deletion of the builtin global-management policy is not permitted"
        )
    },
)
ROLES: ACLKind[ACLRole] = ACLKind(
    "Role", lambda t: t.roles, "acl-roles", name=lambda r: r.name, resolve=_resolve
)
AUTH_METHODS: ACLKind[ACLAuthMethod] = ACLKind(
    "Auth Method", lambda t: t.auth_methods, "acl-auth-methods"
)
BINDING_RULES: ACLKind[ACLBindingRule] = ACLKind(
    "Binding Rule", lambda t: t.binding_rules, "acl-binding-rules"
)


def _missing_link(
    store: StateStore, policies: Iterable[ACLLink], roles: Iterable[ACLLink], owner: str
) -> Result | None:
    for link in policies:
        if store.acl.policies.get(link.id) is None:
            return failed(
                ErrorCode.NOT_FOUND, f"{owner} references non-existent policy ID {link.id!r}"
            )
    for link in roles:
        if store.acl.roles.get(link.id) is None:
            return failed(
                ErrorCode.NOT_FOUND, f"{owner} references non-existent role ID {link.id!r}"
            )
    return None


def _token_error(store: StateStore, token: ACLToken, cas: bool) -> Result | None:
    existing = store.acl.tokens.get(token.accessor_id)
    for other in store.acl.tokens.by("secret", token.secret_id).values():
        if other.accessor_id != token.accessor_id:
            return failed(ErrorCode.CONFLICT, "Invalid Token: SecretID is already in use")
    if existing is not None and existing.secret_id != token.secret_id:
        return failed(ErrorCode.INVALID, "Changing a token's SecretID is not permitted")
    stale = existing is None or existing.modify_index != token.modify_index
    if cas and token.modify_index and stale:
        return failed(ErrorCode.CAS_CONFLICT, f"token {token.accessor_id!r}: index is stale")
    return _missing_link(store, token.policies, token.roles, "ACL Token")


def _put_all(
    store: StateStore,
    tx: WriteTx,
    kind: ACLKind[R],
    records: Iterable[R],
    check: Callable[[R], Result | None] | None = None,
) -> Result:
    """Create or update ``records`` (keeping their CreateIndex); stop at the
    first failing check (the batch is all or nothing: the caller aborts)."""
    table = kind.table(store.acl)
    check = check or (lambda record: kind.conflict(table, record))
    for record in records:
        error = check(record)
        if error is not None:
            return error
        existing = table.get(table.pk(record))
        create = existing.create_index if existing else tx.index
        table.put(tx, replace(record, create_index=create, modify_index=tx.index))
    tx.touch(kind.index)
    return OK


def _delete_all(store: StateStore, tx: WriteTx, kind: ACLKind[Any], keys: Iterable[str]) -> Result:
    """Delete by primary key (unknown ones are ignored, protected ones refused)."""
    for key in keys:
        if key in kind.protected:
            return failed(ErrorCode.INVALID, kind.protected[key])
        kind.table(store.acl).delete(tx, key)
    tx.touch(kind.index)
    return OK


def set_tokens(store: StateStore, tx: WriteTx, cmd: ACLTokenSet) -> Result:
    """Create or update a batch of tokens (all or nothing: the caller aborts on failure)."""
    return _put_all(store, tx, TOKENS, cmd.tokens, lambda t: _token_error(store, t, cmd.cas))


def bootstrap(store: StateStore, tx: WriteTx, cmd: ACLBootstrap) -> Result:
    """Create the bootstrap token once (Consul's ``ACLBootstrap`` in state/acl.go).

    Refused after a previous bootstrap unless ``cmd.reset_index`` equals the
    index that bootstrap was applied at; on success that index becomes this
    write's. The token is written as ``ACLTokenSet`` would write it.
    """
    done = store.indexes.get(BOOTSTRAP_INDEX)
    if done is not None:
        if cmd.reset_index == 0:
            return failed(
                ErrorCode.CONFLICT, f"ACL bootstrap no longer allowed (reset index: {done})"
            )
        if cmd.reset_index != done:
            return failed(
                ErrorCode.INVALID,
                f"Invalid bootstrap reset index (specified {cmd.reset_index}, reset index: {done})",
            )
    result = set_tokens(store, tx, ACLTokenSet(tokens=(cmd.token,)))
    if result.ok:
        tx.touch(BOOTSTRAP_INDEX)
    return result


def delete_tokens(store: StateStore, tx: WriteTx, accessor_ids: Iterable[str]) -> Result:
    """Delete tokens by AccessorID (unknown ones are ignored)."""
    return _delete_all(store, tx, TOKENS, accessor_ids)


def set_policies(store: StateStore, tx: WriteTx, cmd: ACLPolicySet) -> Result:
    """Create or update a batch of policies; names are unique."""
    return _put_all(store, tx, POLICIES, cmd.policies)


def delete_policies(store: StateStore, tx: WriteTx, ids: Iterable[str]) -> Result:
    """Delete policies by ID; the builtin global-management policy is refused."""
    return _delete_all(store, tx, POLICIES, ids)


def set_roles(store: StateStore, tx: WriteTx, cmd: ACLRoleSet) -> Result:
    """Create or update a batch of roles; names are unique, linked policies must exist."""

    def check(role: ACLRole) -> Result | None:
        conflict = ROLES.conflict(store.acl.roles, role)
        return conflict or _missing_link(store, role.policies, (), "ACL Role")

    return _put_all(store, tx, ROLES, cmd.roles, check)


def delete_roles(store: StateStore, tx: WriteTx, ids: Iterable[str]) -> Result:
    """Delete roles by ID (unknown ones are ignored)."""
    return _delete_all(store, tx, ROLES, ids)


def set_auth_methods(store: StateStore, tx: WriteTx, cmd: ACLAuthMethodSet) -> Result:
    """Create or update a batch of auth methods (keyed by name)."""

    def check(method: ACLAuthMethod) -> Result | None:
        existing = store.acl.auth_methods.get(method.name)
        if existing is not None and existing.type != method.type:
            return failed(
                ErrorCode.INVALID,
                f"Invalid Auth Method: cannot change the Type of {method.name!r}",
            )
        return None

    return _put_all(store, tx, AUTH_METHODS, cmd.methods, check)


def delete_auth_methods(store: StateStore, tx: WriteTx, names: Iterable[str]) -> Result:
    """Delete auth methods by name with their binding rules and the tokens
    that logged in through them (Consul's ``ACLAuthMethodDeleteByName``)."""
    for name in names:
        if store.acl.auth_methods.get(name) is None:
            continue
        store.acl.auth_methods.delete(tx, name)
        for rule_id in list(store.acl.binding_rules.by("method", name)):
            store.acl.binding_rules.delete(tx, rule_id)
        for token in list(store.acl.tokens.sorted_records()):
            if token.auth_method == name:
                store.acl.tokens.delete(tx, token.accessor_id)
        tx.touch("acl-binding-rules")
        tx.touch("acl-tokens")
    tx.touch("acl-auth-methods")
    return OK


def set_binding_rules(store: StateStore, tx: WriteTx, cmd: ACLBindingRuleSet) -> Result:
    """Create or update a batch of binding rules; their auth method must exist."""

    def check(rule: ACLBindingRule) -> Result | None:
        if store.acl.auth_methods.get(rule.auth_method) is None:
            return failed(
                ErrorCode.NOT_FOUND,
                f"ACL Binding Rule references non-existent auth method {rule.auth_method!r}",
            )
        return None

    return _put_all(store, tx, BINDING_RULES, cmd.rules, check)


def delete_binding_rules(store: StateStore, tx: WriteTx, ids: Iterable[str]) -> Result:
    """Delete binding rules by ID (unknown ones are ignored)."""
    return _delete_all(store, tx, BINDING_RULES, ids)


# -- reads -------------------------------------------------------------------------------------


def acl_bootstrap_state(store: StateStore, ws: WatchSet | None) -> tuple[int, tuple[bool, int]]:
    """``(allowed, reset_index)``: whether a bootstrap (without reset) may
    still happen, and the index of the last one (0 when none yet)."""
    store.watch(ws, BOOTSTRAP_INDEX)
    done = store.indexes.get(BOOTSTRAP_INDEX)
    return max(1, done or 0), (done is None, done or 0)


def acl_token_by_secret(
    store: StateStore, ws: WatchSet | None, secret_id: str
) -> tuple[int, ACLToken | None]:
    """A token by SecretID (request authentication)."""
    return TOKENS.first(store, ws, "secret", secret_id)


# ``(index, record or None)`` by primary key or unique name; ``(index, records)`` by key.
acl_token_get = TOKENS.get
acl_token_list = TOKENS.list
acl_policy_get = POLICIES.get
acl_policy_by_name = POLICIES.by_name
acl_policy_list = POLICIES.list
acl_role_get = ROLES.get
acl_role_by_name = ROLES.by_name
acl_role_list = ROLES.list
acl_auth_method_get = AUTH_METHODS.get
acl_auth_method_list = AUTH_METHODS.list
acl_binding_rule_get = BINDING_RULES.get


def acl_binding_rule_list(
    store: StateStore, ws: WatchSet | None, method: str = ""
) -> tuple[int, list[ACLBindingRule]]:
    """Every binding rule (of auth method ``method`` when given), by ID."""
    idx, rules = BINDING_RULES.list(store, ws)
    return idx, [r for r in rules if not method or r.auth_method == method]
