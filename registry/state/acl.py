"""ACL tables: tokens (by AccessorID and SecretID), policies and roles (by ID and name).

Writes follow Consul's state/acl.go batch semantics: a batch is all or
nothing; secrets and names are unique; a token or role may only link
policies (and roles) that exist; the builtin global-management policy cannot
be deleted. Link names are resolved at read time, so a renamed policy shows
its new name and a deleted one disappears from the links (as Consul does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

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


def set_tokens(store: StateStore, tx: WriteTx, cmd: ACLTokenSet) -> Result:
    """Create or update a batch of tokens (all or nothing: the caller aborts on failure)."""
    table = store.acl.tokens
    for token in cmd.tokens:
        error = _token_error(store, token, cmd.cas)
        if error is not None:
            return error
        existing = table.get(token.accessor_id)
        create = existing.create_index if existing else tx.index
        table.put(tx, replace(token, create_index=create, modify_index=tx.index))
    tx.touch("acl-tokens")
    return OK


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
    for accessor in accessor_ids:
        store.acl.tokens.delete(tx, accessor)
    tx.touch("acl-tokens")
    return OK


def set_policies(store: StateStore, tx: WriteTx, cmd: ACLPolicySet) -> Result:
    """Create or update a batch of policies; names are unique."""
    table = store.acl.policies
    for policy in cmd.policies:
        for other in table.by("name", policy.name).values():
            if other.id != policy.id:
                return failed(
                    ErrorCode.CONFLICT,
                    f"Invalid Policy: A Policy with Name {policy.name!r} already exists",
                )
        existing = table.get(policy.id)
        create = existing.create_index if existing else tx.index
        table.put(tx, replace(policy, create_index=create, modify_index=tx.index))
    tx.touch("acl-policies")
    return OK


def delete_policies(store: StateStore, tx: WriteTx, ids: Iterable[str]) -> Result:
    """Delete policies by ID; the builtin global-management policy is refused."""
    for policy_id in ids:
        if policy_id == GLOBAL_MANAGEMENT_POLICY_ID:
            return failed(
                ErrorCode.INVALID,
                "Deletion of the builtin global-management policy is not permitted",
            )
        store.acl.policies.delete(tx, policy_id)
    tx.touch("acl-policies")
    return OK


def set_roles(store: StateStore, tx: WriteTx, cmd: ACLRoleSet) -> Result:
    """Create or update a batch of roles; names are unique, linked policies must exist."""
    table = store.acl.roles
    for role in cmd.roles:
        for other in table.by("name", role.name).values():
            if other.id != role.id:
                return failed(
                    ErrorCode.CONFLICT,
                    f"Invalid Role: A Role with Name {role.name!r} already exists",
                )
        error = _missing_link(store, role.policies, (), "ACL Role")
        if error is not None:
            return error
        existing = table.get(role.id)
        create = existing.create_index if existing else tx.index
        table.put(tx, replace(role, create_index=create, modify_index=tx.index))
    tx.touch("acl-roles")
    return OK


def delete_roles(store: StateStore, tx: WriteTx, ids: Iterable[str]) -> Result:
    """Delete roles by ID (unknown ones are ignored)."""
    for role_id in ids:
        store.acl.roles.delete(tx, role_id)
    tx.touch("acl-roles")
    return OK


def set_auth_methods(store: StateStore, tx: WriteTx, cmd: ACLAuthMethodSet) -> Result:
    """Create or update a batch of auth methods (keyed by name)."""
    table = store.acl.auth_methods
    for method in cmd.methods:
        existing = table.get(method.name)
        if existing is not None and existing.type != method.type:
            return failed(
                ErrorCode.INVALID,
                f"Invalid Auth Method: cannot change the Type of {method.name!r}",
            )
        create = existing.create_index if existing else tx.index
        table.put(tx, replace(method, create_index=create, modify_index=tx.index))
    tx.touch("acl-auth-methods")
    return OK


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
    table = store.acl.binding_rules
    for rule in cmd.rules:
        if store.acl.auth_methods.get(rule.auth_method) is None:
            return failed(
                ErrorCode.NOT_FOUND,
                f"ACL Binding Rule references non-existent auth method {rule.auth_method!r}",
            )
        existing = table.get(rule.id)
        create = existing.create_index if existing else tx.index
        table.put(tx, replace(rule, create_index=create, modify_index=tx.index))
    tx.touch("acl-binding-rules")
    return OK


def delete_binding_rules(store: StateStore, tx: WriteTx, ids: Iterable[str]) -> Result:
    """Delete binding rules by ID (unknown ones are ignored)."""
    for rule_id in ids:
        store.acl.binding_rules.delete(tx, rule_id)
    tx.touch("acl-binding-rules")
    return OK


# -- reads -------------------------------------------------------------------------------------

T = TypeVar("T", ACLToken, ACLRole)


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


def acl_bootstrap_state(store: StateStore, ws: WatchSet | None) -> tuple[int, tuple[bool, int]]:
    """``(allowed, reset_index)``: whether a bootstrap (without reset) may
    still happen, and the index of the last one (0 when none yet)."""
    store.watch(ws, BOOTSTRAP_INDEX)
    done = store.indexes.get(BOOTSTRAP_INDEX)
    return max(1, done or 0), (done is None, done or 0)


def acl_token_get(
    store: StateStore, ws: WatchSet | None, accessor_id: str
) -> tuple[int, ACLToken | None]:
    """A token by AccessorID."""
    idx = _idx(store, ws, "acl-tokens")
    token = store.acl.tokens.get(accessor_id)
    return idx, _resolve(store, token) if token else None


def acl_token_by_secret(
    store: StateStore, ws: WatchSet | None, secret_id: str
) -> tuple[int, ACLToken | None]:
    """A token by SecretID (request authentication)."""
    idx = _idx(store, ws, "acl-tokens")
    token = next(iter(store.acl.tokens.by("secret", secret_id).values()), None)
    return idx, _resolve(store, token) if token else None


def acl_token_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[ACLToken]]:
    """Every token, by AccessorID."""
    idx = _idx(store, ws, "acl-tokens")
    return idx, [_resolve(store, t) for t in store.acl.tokens.sorted_records()]


def acl_policy_get(
    store: StateStore, ws: WatchSet | None, policy_id: str
) -> tuple[int, ACLPolicy | None]:
    """A policy by ID."""
    return _idx(store, ws, "acl-policies"), store.acl.policies.get(policy_id)


def acl_policy_by_name(
    store: StateStore, ws: WatchSet | None, name: str
) -> tuple[int, ACLPolicy | None]:
    """A policy by name."""
    idx = _idx(store, ws, "acl-policies")
    return idx, next(iter(store.acl.policies.by("name", name).values()), None)


def acl_policy_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[ACLPolicy]]:
    """Every policy, by ID."""
    return _idx(store, ws, "acl-policies"), store.acl.policies.sorted_records()


def acl_role_get(
    store: StateStore, ws: WatchSet | None, role_id: str
) -> tuple[int, ACLRole | None]:
    """A role by ID."""
    idx = _idx(store, ws, "acl-roles")
    role = store.acl.roles.get(role_id)
    return idx, _resolve(store, role) if role else None


def acl_role_by_name(
    store: StateStore, ws: WatchSet | None, name: str
) -> tuple[int, ACLRole | None]:
    """A role by name."""
    idx = _idx(store, ws, "acl-roles")
    role = next(iter(store.acl.roles.by("name", name).values()), None)
    return idx, _resolve(store, role) if role else None


def acl_role_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[ACLRole]]:
    """Every role, by ID."""
    idx = _idx(store, ws, "acl-roles")
    return idx, [_resolve(store, r) for r in store.acl.roles.sorted_records()]


def acl_auth_method_get(
    store: StateStore, ws: WatchSet | None, name: str
) -> tuple[int, ACLAuthMethod | None]:
    """An auth method by name."""
    return _idx(store, ws, "acl-auth-methods"), store.acl.auth_methods.get(name)


def acl_auth_method_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[ACLAuthMethod]]:
    """Every auth method, by name."""
    return _idx(store, ws, "acl-auth-methods"), store.acl.auth_methods.sorted_records()


def acl_binding_rule_get(
    store: StateStore, ws: WatchSet | None, rule_id: str
) -> tuple[int, ACLBindingRule | None]:
    """A binding rule by ID."""
    return _idx(store, ws, "acl-binding-rules"), store.acl.binding_rules.get(rule_id)


def acl_binding_rule_list(
    store: StateStore, ws: WatchSet | None, method: str = ""
) -> tuple[int, list[ACLBindingRule]]:
    """Every binding rule (of auth method ``method`` when given), by ID."""
    idx = _idx(store, ws, "acl-binding-rules")
    rules = store.acl.binding_rules.sorted_records()
    return idx, [r for r in rules if not method or r.auth_method == method]
