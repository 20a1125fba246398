"""ACL management on the servers: initialisation, bootstrap and validated writes.

While this server leads and ACLs are enabled, ``run`` makes sure (idempotently,
as Consul's ``initializeACLs`` does) that the builtin ``global-management``
policy exists with its builtin rules, that the anonymous token exists
(SecretID ``anonymous``, no policies) and that ``acl.tokens.initial_management``,
when set, is a token holding global-management; it also deletes expired
tokens (Consul's token reaper).

The RPC methods behind /v1/acl writes run on the leader under one lock so
that the checks they make against the state (names in use, links that
exist) and the write they propose see the same state. IDs, secrets and
times are chosen here, before Raft, so every command is deterministic.
Authorization is the HTTP edge's job (meshd/api/acl.py) and, over RPC,
``rpc_rules.RULES``'s (``acl:write`` on the call's token); with ``resolve``
(the agent's token resolver) the write methods check ``acl:write`` again on
the ``auth_token`` argument (else the call's token), also for in-process calls.
Error texts are Consul's (agent/consul/acl_endpoint.go,
agent/consul/auth/token_writer.go); where Consul answers a validation
failure with 500, meshd answers 400 with the same text.

``ACL.Bootstrap`` follows https://developer.hashicorp.com/consul/api-docs/acl#bootstrap-acls:
one management token, then ``ACL bootstrap no longer allowed (reset index:
N)`` until an operator writes N into ``<data_dir>/acl-bootstrap-reset`` on
the leader; the file is removed once read. Secrets are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from raft.transport import PeerInfo
from registry import queries as q
from registry.codec import CodecError, from_obj
from registry.commands import (
    ACLBootstrap,
    ACLPolicyDelete,
    ACLPolicySet,
    ACLRoleDelete,
    ACLRoleSet,
    ACLTokenDelete,
    ACLTokenSet,
    Command,
)
from registry.errors import ErrorCode
from registry.records import (
    ACLLink,
    ACLNodeIdentity,
    ACLPolicy,
    ACLRole,
    ACLServiceIdentity,
    ACLTemplatedPolicy,
    ACLToken,
)
from registry.state.acl import acl_bootstrap_state

from ..acl import (
    ANONYMOUS_TOKEN_ACCESSOR_ID,
    GLOBAL_MANAGEMENT_POLICY_ID,
    ACLAuthorizer,
    ACLPermissionDenied,
    Permission,
    parse_rules,
)
from ..acl.builtin import (
    GLOBAL_MANAGEMENT_POLICY_DESCRIPTION,
    GLOBAL_MANAGEMENT_POLICY_NAME,
    GLOBAL_MANAGEMENT_RULES,
    RESERVED_ID_PREFIX,
    validate_identity_name,
)
from ..acl.errors import IdentityError, RulesError
from ..acl.templated import TEMPLATES, TemplateError, validate_templated_policy
from ..durations import format_duration
from ..errors import (
    ACLNotFound,
    Conflict,
    Internal,
    InvalidArgument,
    MeshdError,
    NotFound,
    PermissionDenied,
    RequestError,
)
from ..rpc import caller_token
from .acl_login import ACLLogin
from .acl_table_reads import policy_json, role_json, token_json

if TYPE_CHECKING:
    from ..config.model import ACLConfig
    from .server import MeshServer

log = logging.getLogger("meshd.acl")

RESET_FILE = "acl-bootstrap-reset"
ANONYMOUS_SECRET = "anonymous"
BOOTSTRAP_DESCRIPTION = "Bootstrap Token (Global Management)"
INITIAL_MANAGEMENT_DESCRIPTION = "Initial Management Token"
ANONYMOUS_DESCRIPTION = "Anonymous Token"
# acl.IsValidPolicyName / IsValidRoleName.
_POLICY_NAME = re.compile(r"[A-Za-z0-9\-_]{1,128}")
_ROLE_NAME = re.compile(r"[A-Za-z0-9\-_]{1,256}")

# RPCs that do not take acl:write on ``auth_token``: bootstrap has no token yet,
# login presents a JWT, logout presents the login token it deletes.
_NO_ACL_WRITE = frozenset({"ACL.Bootstrap", "ACL.Login", "ACL.Logout"})
# RPCs that take ``ACLServer._lock`` themselves, only around their write: a
# login fetches a JWKS and checks a signature first, which must not hold up
# every other ACL write.
_OWN_LOCK = frozenset({"ACL.Login"})

RPCHandler = Callable[[Mapping[str, Any], PeerInfo], Awaitable[Any]]


def rfc3339(seconds: float) -> str:
    """``seconds`` since the epoch as RFC 3339 in UTC with microseconds."""
    text = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str, field: str) -> float:
    """An RFC 3339 time as seconds since the epoch; raises ``InvalidArgument``."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{field}: invalid RFC 3339 time {_q(text)}", field) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def _q(text: str) -> str:
    """``text`` quoted as Go's ``%q`` does (Consul's messages use it)."""
    return json.dumps(text, ensure_ascii=False)


def _check_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _decode(args: Mapping[str, Any], key: str, tp: Any) -> Any:
    try:
        return from_obj(args.get(key), tp)
    except CodecError as exc:
        raise InvalidArgument(f"Request decode failed: {exc}") from None


class ACLServer:
    """The ACL RPC methods and the leader's ACL loop of one ``MeshServer``."""

    def __init__(
        self,
        server: MeshServer,
        config: ACLConfig,
        *,
        datacenter: str,
        data_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        resolve: Callable[[str], Awaitable[ACLAuthorizer]] | None = None,
    ) -> None:
        self.srv = server
        self._resolve = resolve
        self.config = config
        self.datacenter = datacenter
        self.data_dir = data_dir
        self._clock = clock
        self._lock = trio.Lock()
        methods: dict[str, Callable[[Mapping[str, Any]], Awaitable[Any]]] = {
            "ACL.Bootstrap": self._bootstrap,
            "ACL.TokenSet": self._token_set,
            "ACL.TokenClone": self._token_clone,
            "ACL.TokenDelete": self._token_delete,
            "ACL.PolicySet": self._policy_set,
            "ACL.PolicyDelete": self._policy_delete,
            "ACL.RoleSet": self._role_set,
            "ACL.RoleDelete": self._role_delete,
            # Auth methods, binding rules: acl:write. ACL.Login needs no token
            # (the bearer JWT is the credential); ACL.Logout needs the token it
            # deletes (see _NO_ACL_WRITE).
            **ACLLogin(self).methods(),
        }
        for name, method in methods.items():
            server.register_rpc(name, self._on_leader(name, method))

    def _on_leader(
        self, name: str, method: Callable[[Mapping[str, Any]], Awaitable[Any]]
    ) -> RPCHandler:
        async def handler(args: Mapping[str, Any], peer: PeerInfo) -> Any:
            async def local() -> Any:
                if name in _OWN_LOCK:
                    return await method(args)
                async with self._lock:
                    return await method(args)

            self.srv.check_forwarded(args)
            if self._resolve is not None and name not in _NO_ACL_WRITE and not args.get("fwd"):
                # Defence in depth: a client agent checked already, but the
                # server does not take its word for it (as for Registry.Apply).
                # A forwarded call was checked by the server that forwarded
                # it (only servers may forward, see rpc_rules).
                token = str(args.get("auth_token") or "") or caller_token.get()
                authz = await self._resolve(token)
                if not authz.allowed(Permission.ACL_WRITE):
                    denied = ACLPermissionDenied(authz.accessor_id, Permission.ACL_WRITE.label)
                    raise PermissionDenied(str(denied))
            return await self.srv.on_leader(name, args, local)

        return handler

    @property
    def _store(self) -> Any:
        return self.srv.store

    async def _apply(self, cmd: Command) -> None:
        """Write ``cmd``; a refusal becomes the HTTP error it stands for."""
        result = await self.srv.write(cmd)
        if result.ok:
            return
        message = result.message or str(result.error)
        if result.error in (ErrorCode.CONFLICT, ErrorCode.CAS_CONFLICT):
            raise Conflict(message)
        raise InvalidArgument(message)

    # ---------------------------------------------------------------- leader

    async def run(self) -> None:
        """While this server leads: create the builtin policy, the anonymous
        and initial management tokens when missing, and delete expired
        tokens. Runs until cancelled; a failed step is logged and retried."""

        async def step() -> None:
            await self.initialize()
            await self._reap()

        await self.srv.while_leader(
            step, event="acl_leader_step", expected=(MeshdError, RequestError), lock=self._lock
        )

    async def initialize(self) -> None:
        """Consul's ``initializeACLs``: idempotent, leader only."""
        _, policy = q.acl_policy_get(self._store, None, GLOBAL_MANAGEMENT_POLICY_ID)
        if policy is None or policy.rules != GLOBAL_MANAGEMENT_RULES:
            builtin = ACLPolicy(
                GLOBAL_MANAGEMENT_POLICY_ID,
                name=policy.name if policy else GLOBAL_MANAGEMENT_POLICY_NAME,
                description=policy.description if policy else GLOBAL_MANAGEMENT_POLICY_DESCRIPTION,
                rules=GLOBAL_MANAGEMENT_RULES,
            )
            await self._apply(ACLPolicySet(policies=(builtin,)))
            log.info("event=acl_builtin_policy_created name=%s", builtin.name)
        _, anonymous = q.acl_token_by_secret(self._store, None, ANONYMOUS_SECRET)
        if anonymous is None:
            token = ACLToken(
                ANONYMOUS_TOKEN_ACCESSOR_ID,
                ANONYMOUS_SECRET,
                ANONYMOUS_DESCRIPTION,
                create_time=rfc3339(self._clock()),
            )
            await self._apply(ACLTokenSet(tokens=(token,)))
            log.info("event=acl_anonymous_token_created")
        secret = self.config.tokens.initial_management
        if secret:
            await self._initial_management(secret)

    async def _initial_management(self, secret: str) -> None:
        _, existing = q.acl_token_by_secret(self._store, None, secret)
        if existing is not None:
            return
        token = ACLToken(
            str(uuid.uuid4()),
            secret,
            INITIAL_MANAGEMENT_DESCRIPTION,
            policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID),),
            create_time=rfc3339(self._clock()),
        )
        # Consul spends the one-time bootstrap on this token when it still can.
        _, (allowed, _reset) = acl_bootstrap_state(self._store, None)
        cmd: Command = ACLBootstrap(token=token) if allowed else ACLTokenSet(tokens=(token,))
        await self._apply(cmd)
        log.info("event=acl_initial_management_token_created accessor=%s", token.accessor_id)

    async def _reap(self) -> None:
        _, tokens = q.acl_token_list(self._store, None)
        now = self._clock()
        gone = tuple(t.accessor_id for t in tokens if t.expired(now))
        if gone:
            await self._apply(ACLTokenDelete(accessor_ids=gone))
            log.info("event=acl_tokens_reaped count=%d", len(gone))

    # ------------------------------------------------------------- bootstrap

    def _reset_file_index(self) -> int:
        """The index in ``<data_dir>/acl-bootstrap-reset`` (0: none or unreadable)."""
        if self.data_dir is None:
            return 0
        path = self.data_dir / RESET_FILE
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.error("event=acl_bootstrap_reset_unreadable file=%s reason=%s", path, exc)
            return 0
        try:
            return int(text)
        except ValueError:
            log.error("event=acl_bootstrap_reset_invalid file=%s", path)
            return 0

    def _remove_reset_file(self) -> None:
        if self.data_dir is not None:
            (self.data_dir / RESET_FILE).unlink(missing_ok=True)

    async def _bootstrap(self, args: Mapping[str, Any]) -> Any:
        _, (allowed, reset_index) = acl_bootstrap_state(self._store, None)
        specified = 0
        if not allowed:
            specified = self._reset_file_index()
            if specified == 0:
                raise PermissionDenied(
                    "Permission denied: ACL bootstrap no longer allowed "
                    f"(reset index: {reset_index})"
                )
            if specified != reset_index:
                raise InvalidArgument(
                    f"Invalid bootstrap reset index (specified {specified}, "
                    f"reset index: {reset_index})"
                )
            # Read and valid: never let the file allow a second bootstrap.
            self._remove_reset_file()
        token = ACLToken(
            str(uuid.uuid4()),
            str(uuid.uuid4()),
            BOOTSTRAP_DESCRIPTION,
            policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID),),
            create_time=rfc3339(self._clock()),
        )
        result = await self.srv.write(ACLBootstrap(token=token, reset_index=specified))
        if not result.ok:
            if result.error is ErrorCode.CONFLICT:
                raise PermissionDenied(f"Permission denied: {result.message}")
            raise InvalidArgument(result.message or str(result.error))
        log.info("event=acl_bootstrap_completed accessor=%s", token.accessor_id)
        return self._token_json(token.accessor_id)

    def _token_json(self, accessor_id: str) -> Any:
        _, token = q.acl_token_get(self._store, None, accessor_id)
        if token is None:
            raise Internal("Failed to retrieve token after insertion")
        return token_json(token)

    # ---------------------------------------------------------------- tokens

    def _id_in_use(self, value: str) -> bool:
        store = self._store
        if q.acl_token_get(store, None, value)[1] is not None:
            return True
        return q.acl_token_by_secret(store, None, value)[1] is not None

    def _new_id(self, value: str, what: str) -> str:
        if not value:
            return str(uuid.uuid4())
        if value.startswith(RESERVED_ID_PREFIX):
            raise InvalidArgument(
                f"Invalid Token: {what} - UUIDs with the prefix "
                f"{_q(RESERVED_ID_PREFIX)} are reserved",
                what,
            )
        if not _check_uuid(value):
            raise InvalidArgument(f"Invalid Token: {what} - not a valid UUID", what)
        if self._id_in_use(value):
            raise InvalidArgument(f"Invalid Token: {what} is already in use", what)
        return value

    def _prepare_create(self, token: ACLToken, ttl: float | None) -> ACLToken:
        accessor = self._new_id(token.accessor_id, "AccessorID")
        secret = self._new_id(token.secret_id, "SecretID")
        now = self._clock()
        expiration = token.expiration_time
        low = self.config.token_min_expiration_ttl
        high = self.config.token_max_expiration_ttl
        if ttl is not None and ttl < 0:
            raise InvalidArgument(
                f"Token Expiration TTL '{format_duration(ttl)}' should be > 0", "ExpirationTTL"
            )
        expires_in = 0.0
        if ttl:
            if expiration:
                raise InvalidArgument("Token Expiration TTL and Expiration Time cannot both be set")
            expiration, expires_in = rfc3339(now + ttl), ttl
        elif expiration:
            expires_in = parse_time(expiration, "ExpirationTime") - now
        if expiration:
            if expires_in < 0:
                raise InvalidArgument(
                    "ExpirationTime cannot be before CreateTime", "ExpirationTime"
                )
            if expires_in > high:
                raise InvalidArgument(
                    f"ExpirationTime cannot be more than {format_duration(high)} "
                    f"in the future (was {format_duration(expires_in)})",
                    "ExpirationTime",
                )
            if expires_in < low:
                raise InvalidArgument(
                    f"ExpirationTime cannot be less than {format_duration(low)} "
                    f"in the future (was {format_duration(expires_in)})",
                    "ExpirationTime",
                )
        return replace(
            token,
            accessor_id=accessor,
            secret_id=secret,
            create_time=rfc3339(now),
            expiration_time=expiration,
        )

    def _prepare_update(self, token: ACLToken, ttl: float | None) -> ACLToken:
        accessor = token.accessor_id
        if not _check_uuid(accessor):
            raise InvalidArgument("AccessorID is not a valid UUID", "AccessorID")
        _, match = q.acl_token_get(self._store, None, accessor)
        if match is None or match.expired(self._clock()):
            raise NotFound(f"Cannot find token {_q(accessor)}")
        if token.secret_id and token.secret_id != match.secret_id:
            raise InvalidArgument("Changing a token's SecretID is not permitted", "SecretID")
        if token.local != match.local:
            raise InvalidArgument(f"Cannot toggle local mode of {accessor}", "Local")
        if ttl:
            raise InvalidArgument(f"Cannot change expiration time of {accessor}", "ExpirationTTL")
        if token.auth_method and token.auth_method != match.auth_method:
            raise InvalidArgument(f"Cannot change AuthMethod of {accessor}", "AuthMethod")
        if token.expiration_time:
            same = match.expiration_time and parse_time(
                token.expiration_time, "ExpirationTime"
            ) == parse_time(match.expiration_time, "ExpirationTime")
            if not same:
                raise InvalidArgument(
                    f"Cannot change expiration time of {accessor}", "ExpirationTime"
                )
        return replace(
            token,
            secret_id=match.secret_id,
            expiration_time=match.expiration_time,
            create_time=match.create_time,
            auth_method=match.auth_method,
        )

    def _links(self, links: Iterable[ACLLink], kind: str) -> tuple[ACLLink, ...]:
        """Links by ID only (names resolved, deduplicated); Consul's
        ``normalizePolicyLinks``/``normalizeRoleLinks``."""
        by_id = q.acl_policy_get if kind == "policy" else q.acl_role_get
        by_name = q.acl_policy_by_name if kind == "policy" else q.acl_role_by_name
        out: dict[str, ACLLink] = {}
        for link in links:
            if link.id:
                if by_id(self._store, None, link.id)[1] is None:
                    raise InvalidArgument(f"No such ACL {kind} with ID {_q(link.id)}")
                link_id = link.id
            else:
                found = by_name(self._store, None, link.name)[1]
                if found is None:
                    raise InvalidArgument(f"No such ACL {kind} with name {_q(link.name)}")
                link_id = found.id
            out.setdefault(link_id, ACLLink(link_id))
        return tuple(out.values())

    async def _token_set(self, args: Mapping[str, Any]) -> Any:
        token: ACLToken = _decode(args, "token", ACLToken)
        ttl = args.get("ttl")
        if ttl is not None and not isinstance(ttl, int | float):
            raise InvalidArgument("ExpirationTTL: must be a duration", "ExpirationTTL")
        if args.get("create") or not token.accessor_id:
            if token.auth_method:
                raise InvalidArgument(
                    "AuthMethod field is disallowed outside of login", "AuthMethod"
                )
            token = self._prepare_create(token, ttl)
        else:
            token = self._prepare_update(token, ttl)
        token = self._normalized_token(token)
        await self._apply(ACLTokenSet(tokens=(token,)))
        return self._token_json(token.accessor_id)

    def _normalized_token(self, token: ACLToken) -> ACLToken:
        return replace(
            token,
            policies=self._links(token.policies, "policy"),
            roles=self._links(token.roles, "role"),
            service_identities=_service_identities(token.service_identities, token.local, "token"),
            node_identities=_node_identities(token.node_identities, "token"),
            templated_policies=_templated_policies(token.templated_policies, token.local, "token"),
            create_index=0,
            modify_index=0,
        )

    async def _token_clone(self, args: Mapping[str, Any]) -> Any:
        accessor = str(args.get("id") or "")
        _, match = q.acl_token_get(self._store, None, accessor)
        if match is None or match.expired(self._clock()):
            raise ACLNotFound()  # Consul's acl.ErrNotFound
        if match.auth_method:
            raise InvalidArgument("Cannot clone a token created from an auth method")
        description = str(args.get("description") or "") or match.description
        clone = ACLToken(
            "",
            "",
            description,
            policies=match.policies,
            roles=match.roles,
            service_identities=match.service_identities,
            node_identities=match.node_identities,
            templated_policies=match.templated_policies,
            local=match.local,
            expiration_time=match.expiration_time,
        )
        token = self._normalized_token(self._prepare_create(clone, None))
        await self._apply(ACLTokenSet(tokens=(token,)))
        return self._token_json(token.accessor_id)

    async def _token_delete(self, args: Mapping[str, Any]) -> Any:
        accessor = str(args.get("id") or "")
        if not _check_uuid(accessor):
            raise InvalidArgument("Accessor ID is missing or an invalid UUID")
        if accessor == ANONYMOUS_TOKEN_ACCESSOR_ID:
            raise InvalidArgument("Delete operation not permitted on the anonymous token")
        _, token = q.acl_token_get(self._store, None, accessor)
        if token is None:
            return True
        if args.get("caller") and args.get("caller") == token.secret_id:
            raise InvalidArgument("Deletion of the request's authorization token is not permitted")
        await self._apply(ACLTokenDelete(accessor_ids=(accessor,)))
        return True

    # -------------------------------------------------------------- policies

    async def _policy_set(self, args: Mapping[str, Any]) -> Any:
        policy: ACLPolicy = _decode(args, "policy", ACLPolicy)
        store = self._store
        if not policy.name:
            raise InvalidArgument("Invalid Policy: no Name is set", "Name")
        if not _POLICY_NAME.fullmatch(policy.name):
            raise InvalidArgument(
                "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' "
                "are allowed",
                "Name",
            )
        _, name_match = q.acl_policy_by_name(store, None, policy.name)
        if not policy.id:
            if name_match is not None:
                raise InvalidArgument(
                    f"Invalid Policy: A Policy with Name {_q(policy.name)} already exists", "Name"
                )
            policy = replace(policy, id=str(uuid.uuid4()))
        else:
            if not _check_uuid(policy.id):
                raise InvalidArgument("Policy ID invalid UUID", "ID")
            _, id_match = q.acl_policy_get(store, None, policy.id)
            if id_match is None:
                raise NotFound(f"cannot find policy {policy.id}")
            if id_match.name != policy.name and name_match is not None:
                raise InvalidArgument(
                    f"Invalid Policy: A policy with name {_q(policy.name)} already exists", "Name"
                )
            if policy.id == GLOBAL_MANAGEMENT_POLICY_ID:
                _check_builtin_policy(policy, id_match)
        try:
            parse_rules(policy.rules)
        except RulesError as exc:
            raise InvalidArgument(f"Invalid request: Rules: {exc}", "Rules") from None
        policy = replace(policy, create_index=0, modify_index=0)
        await self._apply(ACLPolicySet(policies=(policy,)))
        _, stored = q.acl_policy_get(store, None, policy.id)
        if stored is None:
            raise Internal("Failed to retrieve policy after insertion")
        return policy_json(stored)

    async def _policy_delete(self, args: Mapping[str, Any]) -> Any:
        policy_id = str(args.get("id") or "")
        _, policy = q.acl_policy_get(self._store, None, policy_id)
        if policy is None:
            return True
        if policy.id == GLOBAL_MANAGEMENT_POLICY_ID:
            raise InvalidArgument(
                "Delete operation not permitted on the builtin global-management policy"
            )
        await self._apply(ACLPolicyDelete(ids=(policy_id,)))
        return True

    # ----------------------------------------------------------------- roles

    async def _role_set(self, args: Mapping[str, Any]) -> Any:
        role: ACLRole = _decode(args, "role", ACLRole)
        store = self._store
        if not role.name:
            raise InvalidArgument("Invalid Role: no Name is set", "Name")
        if not _ROLE_NAME.fullmatch(role.name):
            raise InvalidArgument(
                "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
                "Name",
            )
        _, name_match = q.acl_role_by_name(store, None, role.name)
        if not role.id:
            if name_match is not None:
                raise InvalidArgument(
                    f"Invalid Role: A Role with Name {_q(role.name)} already exists", "Name"
                )
            role = replace(role, id=str(uuid.uuid4()))
        else:
            if not _check_uuid(role.id):
                raise InvalidArgument("Role ID invalid UUID", "ID")
            _, existing = q.acl_role_get(store, None, role.id)
            if existing is None:
                raise NotFound(f"cannot find role {role.id}")
            if existing.name != role.name and name_match is not None:
                raise InvalidArgument(
                    f"Invalid Role: A role with name {_q(role.name)} already exists", "Name"
                )
        role = replace(
            role,
            policies=self._links(role.policies, "policy"),
            service_identities=_service_identities(role.service_identities, False, "role"),
            node_identities=_node_identities(role.node_identities, "role"),
            templated_policies=_templated_policies(role.templated_policies, False, "role"),
            create_index=0,
            modify_index=0,
        )
        await self._apply(ACLRoleSet(roles=(role,)))
        _, stored = q.acl_role_get(store, None, role.id)
        if stored is None:
            raise Internal("Failed to retrieve role after insertion")
        return role_json(stored)

    async def _role_delete(self, args: Mapping[str, Any]) -> Any:
        role_id = str(args.get("id") or "")
        _, role = q.acl_role_get(self._store, None, role_id)
        if role is None:
            return True
        await self._apply(ACLRoleDelete(ids=(role_id,)))
        return True


def _check_builtin_policy(policy: ACLPolicy, existing: ACLPolicy) -> None:
    """Only the name and description of global-management may change."""
    if policy.datacenters:
        raise InvalidArgument(
            "Changing the Datacenters of the builtin global-management policy is not permitted",
            "Datacenters",
        )
    if policy.rules != existing.rules:
        raise InvalidArgument(
            "Changing the Rules for the builtin global-management policy is not permitted",
            "Rules",
        )


def _service_identities(
    identities: Iterable[ACLServiceIdentity], local: bool, owner: str
) -> tuple[ACLServiceIdentity, ...]:
    """Validated and deduplicated by name, datacenters merged (Consul's
    ``ACLServiceIdentities.Deduplicate``)."""
    merged: dict[str, list[str]] = {}
    for ident in identities:
        name = ident.service_name
        if not name:
            raise InvalidArgument(
                f"Service identity is missing the service name field on this {owner}"
            )
        if local and ident.datacenters:
            raise InvalidArgument(
                f"Service identity {_q(name)} cannot specify a list of datacenters on a local token"
            )
        try:
            validate_identity_name("Service", name)
        except IdentityError as exc:
            raise InvalidArgument(str(exc), "ServiceIdentities") from None
        dcs = merged.setdefault(name, [])
        dcs.extend(dc for dc in ident.datacenters if dc not in dcs)
    return tuple(ACLServiceIdentity(name, tuple(dcs)) for name, dcs in merged.items())


def _node_identities(
    identities: Iterable[ACLNodeIdentity], owner: str
) -> tuple[ACLNodeIdentity, ...]:
    """Validated and deduplicated (Consul's ``ACLNodeIdentities.Deduplicate``)."""
    out: dict[tuple[str, str], ACLNodeIdentity] = {}
    for ident in identities:
        if not ident.node_name:
            raise InvalidArgument(f"Node identity is missing the node name field on this {owner}")
        if not ident.datacenter:
            raise InvalidArgument(f"Node identity is missing the datacenter field on this {owner}")
        try:
            validate_identity_name("Node", ident.node_name)
        except IdentityError:
            raise InvalidArgument(
                "Node identity has an invalid name. Only lowercase alphanumeric characters, "
                "'-' and '_' are allowed",
                "NodeIdentities",
            ) from None
        out.setdefault((ident.node_name, ident.datacenter), ident)
    return tuple(out.values())


def _templated_policies(
    templated: Iterable[ACLTemplatedPolicy], local: bool, owner: str
) -> tuple[ACLTemplatedPolicy, ...]:
    """Validated against their templates and deduplicated (Consul's
    token_writer checks and ``ACLTemplatedPolicies.Deduplicate``)."""
    out: dict[tuple[str, str], list[str]] = {}
    for tp in templated:
        if not tp.template_name:
            raise InvalidArgument(
                f"templated policy is missing the template name field on this {owner}",
                "TemplatedPolicies",
            )
        if tp.template_name not in TEMPLATES:
            raise InvalidArgument(
                f"templated policy with an invalid templated name: {tp.template_name} "
                f"for this {owner}",
                "TemplatedPolicies",
            )
        if local and tp.datacenters:
            raise InvalidArgument(
                f"templated policy {_q(tp.template_name)} cannot specify a list of "
                "datacenters on a local token",
                "TemplatedPolicies",
            )
        try:
            validate_templated_policy(tp.template_name, tp.name)
        except TemplateError as exc:
            raise InvalidArgument(
                f"encountered templated policy variables validation error: {exc}",
                "TemplatedPolicies",
            ) from None
        dcs = out.setdefault((tp.template_name, tp.name), [])
        dcs.extend(dc for dc in tp.datacenters if dc not in dcs)
    return tuple(ACLTemplatedPolicy(t, n, tuple(d)) for (t, n), d in out.items())
