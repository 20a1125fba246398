"""Token → ``ACLAuthorizer`` resolution, on servers and (cached) on client agents.

Servers answer ``ACL.Resolve`` from their replicated state: the token by
SecretID, its policies and its roles' policies, and the templated policies
of its service and node identities, as rule texts. Agents compile the
answer into an ``ACLAuthorizer`` (parsed policies are cached by ID and
ModifyIndex, since parsing costs far more than deciding) and cache it per
secret for ``acl.token_ttl``; servers keep theirs while the ACL tables are
unchanged. When no server can be asked, ``acl.down_policy`` decides as in
Consul: ``extend-cache``/``async-cache`` keep using the cached authorizer
past its TTL (deny if there is none), ``allow`` allows all but ACL
management, ``deny`` denies all.

The empty token is the agent's ``acl.tokens.default`` if set, else the
anonymous token. ``acl.tokens.agent_recovery`` is resolved locally and
grants ``agent:write`` on this node and ``node:read``, so an operator can
still reach the agent when the servers are down. Token secrets are never
logged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import trio

from raft.transport import PeerInfo
from registry import queries as q
from registry.records import expired_at

from ..acl import (
    ANONYMOUS_TOKEN_ACCESSOR_ID,
    ACLAuthorizer,
    Policy,
    allow_all,
    deny_all,
    manage_all,
    node_identity_policy,
    parse_rules,
    service_identity_policy,
)
from ..acl import request as acl_context
from ..acl.errors import ACLError
from ..acl.templated import TemplateError, templated_policy
from ..errors import (
    ACLNotFound,
    MeshdError,
    NoLeaderError,
    NoServersError,
    PermissionDenied,
    RequestError,
)
from .wire import ReadOptions, ReadResult

if TYPE_CHECKING:
    from ..config.model import ACLConfig
    from .server import MeshServer
    from .tokens import TokenStore

log = logging.getLogger("meshd.acl")

ANONYMOUS_SECRET = "anonymous"
ACL_TABLES = ("acl-tokens", "acl-policies", "acl-roles")
RECOVERY_ACCESSOR = "agent-recovery-token"
# How long ACL.Resolve waits for the leader's establishment (the HTTP API's
# bound, meshd/api/routes.py), and how often it looks.
ESTABLISHMENT_WAIT = 5.0
ESTABLISHMENT_POLL = 0.01
# How long after a logout through this agent the token is resolved with
# ``consistent`` (read-your-writes across servers), and how many are kept.
FORGOTTEN_FOR = 60.0
FORGOTTEN_MAX = 1_000


def resolve_in_store(store: Any, secret: str, now: float) -> dict[str, Any]:
    """What a token grants, as plain data: its AccessorID, the rule texts of
    its policies (direct and through roles) and its identities. Raises
    ``ACLNotFound`` for an unknown or expired token."""
    _, token = q.acl_token_by_secret(store, None, secret)
    if token is None or token.expired(now):
        raise ACLNotFound()
    policy_ids = [p.id for p in token.policies]
    services = [(s.service_name, list(s.datacenters)) for s in token.service_identities]
    nodes = [(n.node_name, n.datacenter) for n in token.node_identities]
    templated = [(t.template_name, t.name, list(t.datacenters)) for t in token.templated_policies]
    for link in token.roles:
        _, role = q.acl_role_get(store, None, link.id)
        if role is None:
            continue
        policy_ids.extend(p.id for p in role.policies)
        services.extend((s.service_name, list(s.datacenters)) for s in role.service_identities)
        nodes.extend((n.node_name, n.datacenter) for n in role.node_identities)
        templated.extend(
            (t.template_name, t.name, list(t.datacenters)) for t in role.templated_policies
        )
    policies = []
    for pid in dict.fromkeys(policy_ids):
        _, policy = q.acl_policy_get(store, None, pid)
        if policy is not None:
            policies.append(
                {
                    "id": policy.id,
                    "index": policy.modify_index,
                    "rules": policy.rules,
                    "datacenters": list(policy.datacenters),
                }
            )
    return {
        "accessor_id": token.accessor_id,
        "policies": policies,
        "service_identities": services,
        "node_identities": nodes,
        "templated_policies": templated,
        "expiration_time": token.expiration_time,
    }


@dataclass
class _Cached:
    authz: ACLAuthorizer
    fetched: float
    version: int  # servers: the ACL tables' index it was built at
    expiration: str = ""  # the token's ExpirationTime: unusable past it


class ACLResolver:
    """Resolves request tokens to authorizers for one agent."""

    def __init__(
        self,
        config: ACLConfig,
        tokens: TokenStore,
        *,
        node: str,
        datacenter: str,
        call: Callable[[str, Mapping[str, Any]], Any],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = config.enabled
        self._config = config
        self._tokens = tokens
        self._node = node
        self._dc = datacenter
        self._call = call
        self._server: MeshServer | None = None
        self._initialized: Callable[[], bool] = lambda: True
        self._clock = clock
        self._wall = wall
        self._cache: dict[str, _Cached] = {}
        self._forgotten: dict[str, float] = {}  # secret -> when it was forgotten
        self._policies: dict[tuple[str, int], Policy] = {}
        self._default_allow = config.default_policy == "allow"

    def attach_server(
        self, server: MeshServer, *, initialized: Callable[[], bool] = lambda: True
    ) -> None:
        """On a server: answer ``ACL.Resolve``, resolve from local state, and
        (ACLs enabled) resolve RPC callers' tokens (``resolve_remote``).
        ``initialized`` tells whether the leader has established leadership
        (readiness.py); an unknown token is looked up again once it has."""
        self._server = server
        self._initialized = initialized
        server.register_rpc("ACL.Resolve", self._rpc_resolve)
        if self.enabled:
            server.token_resolver = self.resolve_remote

    async def resolve_remote(self, secret: str) -> ACLAuthorizer:
        """The authorizer of a token an RPC caller sent: no token is the
        anonymous token (never this agent's default token), and the agent
        recovery token counts for nothing remotely. Raises ``ACLNotFound``."""
        if secret and secret == self._tokens.get("agent_recovery"):
            return self._compile({"accessor_id": RECOVERY_ACCESSOR})
        return await self.resolve(secret or ANONYMOUS_SECRET)

    # ------------------------------------------------------------- server

    async def _rpc_resolve(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        """Raises ``ACLNotFound``. Right after an election the leader may not
        have written the ``initial_management`` token yet: an unknown token
        waits (at most ``ESTABLISHMENT_WAIT``) for the establishment and is
        looked up again, so a client agent's first request does not fail.
        A token unknown to a follower may be one the leader committed a moment
        ago (created through another server): it is looked up again once this
        server has applied everything committed before the call, so a token
        works on every agent as soon as its create has answered. A caller
        that just deleted the token (a logout through a client agent) asks
        with ``consistent``: a follower first applies what the leader had
        committed, so the token it deleted is not found here still."""
        assert self._server is not None
        secret = str(args.get("secret") or "")
        if args.get("consistent") and self._initialized() and not self._server.is_leader():
            await self._catch_up()
        try:
            return resolve_in_store(self._server.store, secret, self._wall())
        except ACLNotFound:
            if self._initialized():
                if self._server.is_leader():
                    raise
                await self._catch_up()
                return resolve_in_store(self._server.store, secret, self._wall())
        with trio.move_on_after(ESTABLISHMENT_WAIT):
            while not self._initialized():
                await trio.sleep(ESTABLISHMENT_POLL)
        return resolve_in_store(self._server.store, secret, self._wall())

    async def _catch_up(self) -> None:
        """Apply what the leader had committed when this was called (bounded
        by ``ESTABLISHMENT_WAIT``; no leader: look up what is here)."""
        assert self._server is not None
        with trio.move_on_after(ESTABLISHMENT_WAIT), contextlib.suppress(NoLeaderError):
            await self._server.barrier(strict=False)

    def _acl_version(self) -> int:
        if self._server is None:
            return 0
        return int(self._server.store.index_of(*ACL_TABLES))

    # -------------------------------------------------------------- agent

    def effective_secret(self, secret: str) -> str:
        """The secret a request acts with: its own, else the agent's default
        token, else the anonymous token."""
        return secret or self._tokens.get("default") or ANONYMOUS_SECRET

    async def resolve(self, secret: str) -> ACLAuthorizer:
        """The authorizer of ``secret`` (see the module docstring). Raises
        ``ACLNotFound`` for an unknown token."""
        if not self.enabled:
            return manage_all()
        secret = self.effective_secret(secret)
        recovery = self._tokens.get("agent_recovery")
        if recovery and secret == recovery:
            return self._recovery()
        cached = self._cache.get(secret)
        now = self._clock()
        if cached is not None and self._fresh(cached, now):
            return cached.authz
        args: dict[str, Any] = {"secret": secret}
        if self._forgotten_recently(secret, now):
            args["consistent"] = True
        try:
            answer = await self._call("ACL.Resolve", args)
        except (NoServersError, NoLeaderError) as exc:
            return self._down(secret, cached, exc)
        except RequestError as exc:
            if isinstance(exc, ACLNotFound | PermissionDenied):
                self._cache.pop(secret, None)
                if secret == ANONYMOUS_SECRET:  # not created yet: the default alone
                    return self._compile({"accessor_id": ANONYMOUS_TOKEN_ACCESSOR_ID})
                raise ACLNotFound() from None
            return self._down(secret, cached, exc)
        except MeshdError as exc:
            return self._down(secret, cached, exc)
        authz = self._compile(answer)
        expiration = str(answer.get("expiration_time") or "")
        self._cache[secret] = _Cached(authz, now, self._acl_version(), expiration)
        if len(self._cache) > 10_000:
            self._cache.pop(next(iter(self._cache)))
        return authz

    def forget(self, secret: str) -> None:
        """Drop ``secret``'s cached authorizer (after a logout through this
        agent, as Consul purges its identity cache). For a while after,
        this agent asks servers to resolve it consistently: a follower that
        has not applied the logout yet must not bring the token back."""
        self._cache.pop(secret, None)
        self._forgotten[secret] = self._clock()
        if len(self._forgotten) > FORGOTTEN_MAX:
            self._forgotten.pop(next(iter(self._forgotten)))

    def _forgotten_recently(self, secret: str, now: float) -> bool:
        at = self._forgotten.get(secret)
        if at is None:
            return False
        if now - at < FORGOTTEN_FOR:
            return True
        del self._forgotten[secret]
        return False

    def _fresh(self, cached: _Cached, now: float) -> bool:
        if expired_at(cached.expiration, self._wall()):
            return False
        if self._server is not None:
            return cached.version == self._acl_version()
        return now - cached.fetched < self._config.token_ttl

    def _down(self, secret: str, cached: _Cached | None, exc: Exception) -> ACLAuthorizer:
        policy = self._config.down_policy
        log.warning("event=acl_resolve_failed down_policy=%s reason=%s", policy, exc)
        if policy == "allow":
            return allow_all()
        if policy in ("extend-cache", "async-cache") and cached is not None:
            return cached.authz
        return deny_all()

    def _recovery(self) -> ACLAuthorizer:
        rules = f'agent "{self._node}" {{ policy = "write" }}\nnode_prefix "" {{ policy = "read" }}'
        return ACLAuthorizer.from_policies(
            [parse_rules(rules)],
            default_allow=False,
            datacenter=self._dc,
            accessor_id=RECOVERY_ACCESSOR,
        )

    def _policy(self, raw: Mapping[str, Any]) -> Policy:
        key = (str(raw["id"]), int(raw.get("index", 0)))
        policy = self._policies.get(key)
        if policy is None:
            policy = parse_rules(str(raw.get("rules") or ""))
            dcs = frozenset(raw.get("datacenters") or ())
            policy = replace(policy, datacenters=dcs)
            if len(self._policies) > 4096:
                self._policies.clear()
            self._policies[key] = policy
        return policy

    def _compile(self, answer: Mapping[str, Any]) -> ACLAuthorizer:
        accessor = str(answer.get("accessor_id") or "")
        policies: list[Policy] = []
        for raw in answer.get("policies") or []:
            try:
                policies.append(self._policy(raw))
            except ACLError as exc:  # stored rules were validated; never fail open
                log.error("event=acl_policy_unparseable id=%s reason=%s", raw.get("id"), exc)
        for name, dcs in answer.get("service_identities") or []:
            policies.append(service_identity_policy(name, dcs))
        for name, dc in answer.get("node_identities") or []:
            policies.append(node_identity_policy(name, dc))
        for template, name, dcs in answer.get("templated_policies") or []:
            try:
                policies.append(templated_policy(template, name, dcs))
            except TemplateError as exc:  # validated when written; never fail open
                log.error("event=acl_templated_policy_invalid template=%s reason=%s", template, exc)
        return ACLAuthorizer.from_policies(
            policies,
            default_allow=self._default_allow,
            datacenter=self._dc,
            accessor_id=accessor,
        )


class TokenScopedReader:
    """Registry reads as one token sees them, for readers that are not API
    requests (DNS): each read runs with that token's authorizer in
    ``acl_context.current``, so ``Agent.read`` filters its answer."""

    def __init__(
        self,
        read: Callable[[str, Mapping[str, Any], ReadOptions], Awaitable[ReadResult]],
        resolver: ACLResolver,
        secret: Callable[[], str],
    ) -> None:
        self._read = read
        self._resolver = resolver
        self._secret = secret

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        secret = self._secret()
        authz = await self._resolver.resolve(secret)
        acl_context.current.set(authz)
        # A client agent's server then answers as this token may see it.
        acl_context.secret.set(self._resolver.effective_secret(secret))
        return await self._read(name, args, opts)
