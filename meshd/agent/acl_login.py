"""Auth methods, binding rules, login and logout on the leader.

Consul's ``ACL.AuthMethodSet``/``Delete``, ``ACL.BindingRuleSet``/``Delete``,
``ACL.Login`` and ``ACL.Logout`` (agent/consul/acl_endpoint.go,
https://developer.hashicorp.com/consul/api-docs/acl/auth-methods,
.../binding-rules and .../acl#login-to-auth-method). Only the ``jwt`` type
exists. Every change is a replicated command; a login writes the token it
creates with ``AuthMethod`` set, ``Local`` unless the method's
``TokenLocality`` is ``global``, and the method's ``MaxTokenTTL`` as its
expiry. A ``JWKSURL`` (``http(s)://`` or ``file://``) is fetched by the
leader at login, off the trio thread, with a 5 s limit, and cached for
5 minutes (fetched again when a signature does not verify, at most once a second,
so a key rotation takes effect). The bearer token
and the SecretIDs are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio

from registry import queries as q
from registry.codec import CodecError, from_obj
from registry.commands import (
    ACLAuthMethodDelete,
    ACLAuthMethodSet,
    ACLBindingRuleDelete,
    ACLBindingRuleSet,
    ACLTokenDelete,
    ACLTokenSet,
    Command,
)
from registry.records import (
    ACLAuthMethod,
    ACLBindingRule,
    ACLLink,
    ACLNodeIdentity,
    ACLServiceIdentity,
    ACLTemplatedPolicy,
    ACLToken,
)
from registry.state import acl as acl_state

from ..acl import jwt_auth
from ..acl.binding import BindingError, bind, validate_rule
from ..durations import format_duration
from ..errors import (
    ACLNotFound,
    Conflict,
    Internal,
    InvalidArgument,
    PermissionDenied,
)
from .acl_table_reads import auth_method_json, binding_rule_json


def _check_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


if TYPE_CHECKING:
    from .acl_server import ACLServer

log = logging.getLogger("meshd.acl")

AUTH_METHOD_TYPES = ("jwt",)
_METHOD_NAME = re.compile(r"[A-Za-z0-9\-_]{1,128}")
JWKS_TIMEOUT = 5.0
JWKS_CACHE_TTL = 300.0
# Logins with bad signatures must not turn into a stream of JWKS fetches.
JWKS_MIN_REFRESH = 1.0
LOGIN_DESCRIPTION = "token created via login"


def _fetch(url: str) -> bytes:
    """The body at ``url`` (http, https or file); raises ``OSError``/``ValueError``."""
    if not url.startswith(("http://", "https://", "file://")):
        raise ValueError(f"unsupported JWKSURL scheme: {url}")
    with urllib.request.urlopen(url, timeout=JWKS_TIMEOUT) as resp:
        body: bytes = resp.read(1 << 20)
        return body


class ACLLogin:
    """The auth-method RPC methods of one ``ACLServer``."""

    def __init__(self, acl: ACLServer) -> None:
        self.acl = acl
        # JWKS URL -> (trio time fetched, keys); a login fetches at most once
        # per JWKS_CACHE_TTL, plus once more when a signature does not verify.
        self._jwks_cache: dict[str, tuple[float, list[Any]]] = {}

    def methods(self) -> dict[str, Callable[[Mapping[str, Any]], Awaitable[Any]]]:
        """RPC name -> method (registered next to the other ACL RPCs)."""
        return {
            "ACL.AuthMethodSet": self.auth_method_set,
            "ACL.AuthMethodDelete": self.auth_method_delete,
            "ACL.BindingRuleSet": self.binding_rule_set,
            "ACL.BindingRuleDelete": self.binding_rule_delete,
            "ACL.Login": self.login,
            "ACL.Logout": self.logout,
        }

    @property
    def _store(self) -> Any:
        return self.acl.srv.store

    async def _apply(self, cmd: Command) -> None:
        await self.acl._apply(cmd)

    # ---------------------------------------------------------- auth methods

    def _check_ttl(self, ttl: float) -> None:
        cfg = self.acl.config
        low, high = cfg.token_min_expiration_ttl, cfg.token_max_expiration_ttl
        if ttl and ttl > high:
            raise InvalidArgument(
                f"MaxTokenTTL {format_duration(ttl)} cannot be more than {format_duration(high)}",
                "MaxTokenTTL",
            )
        if ttl and ttl < low:
            raise InvalidArgument(
                f"MaxTokenTTL {format_duration(ttl)} cannot be less than {format_duration(low)}",
                "MaxTokenTTL",
            )

    async def auth_method_set(self, args: Mapping[str, Any]) -> Any:
        method: ACLAuthMethod = _decode(args, "method", ACLAuthMethod)
        if not method.name:
            raise InvalidArgument("Invalid Auth Method: no Name is set", "Name")
        if not _METHOD_NAME.fullmatch(method.name):
            raise InvalidArgument(
                "Invalid Auth Method: invalid Name. Only alphanumeric characters, '-' and '_' "
                "are allowed",
                "Name",
            )
        # Consul's ACL.AuthMethodSet upserts by name (create and update alike).
        _, existing = acl_state.acl_auth_method_get(self._store, None, method.name)
        if existing is not None and not method.type:
            method = replace(method, type=existing.type)
        if existing is not None and existing.type != method.type:
            raise InvalidArgument("the Type field of an Auth Method is immutable", "Type")
        if method.type not in AUTH_METHOD_TYPES:
            raise InvalidArgument("Invalid Auth Method: Type should be one of: [jwt]", "Type")
        if method.token_locality not in ("", "local", "global"):
            raise InvalidArgument(
                "Invalid Auth Method: TokenLocality should be one of 'local' or 'global'",
                "TokenLocality",
            )
        self._check_ttl(method.max_token_ttl)
        try:
            jwt_auth.parse_config(method.config)
        except jwt_auth.JWTConfigError as exc:
            raise InvalidArgument(f"Invalid Auth Method: {exc}", "Config") from None
        await self._apply(ACLAuthMethodSet(methods=(method,)))
        _, stored = acl_state.acl_auth_method_get(self._store, None, method.name)
        if stored is None:
            raise Internal("Failed to retrieve auth method after insertion")
        return auth_method_json(stored)

    async def auth_method_delete(self, args: Mapping[str, Any]) -> Any:
        name = str(args.get("name") or "")
        _, method = acl_state.acl_auth_method_get(self._store, None, name)
        if method is not None:
            await self._apply(ACLAuthMethodDelete(names=(name,)))
        return True

    # --------------------------------------------------------- binding rules

    async def binding_rule_set(self, args: Mapping[str, Any]) -> Any:
        rule: ACLBindingRule = _decode(args, "rule", ACLBindingRule)
        if args.get("create"):
            rule = replace(rule, id=str(uuid.uuid4()))
        else:
            if not _check_uuid(rule.id):
                raise InvalidArgument("Binding Rule ID invalid UUID", "ID")
            _, existing = acl_state.acl_binding_rule_get(self._store, None, rule.id)
            if existing is None:
                raise InvalidArgument(f"cannot find binding rule {rule.id}", "ID")
            rule = replace(rule, auth_method=rule.auth_method or existing.auth_method)
            if rule.auth_method != existing.auth_method:
                raise InvalidArgument(
                    "the AuthMethod field of an Binding Rule is immutable", "AuthMethod"
                )
        if not rule.auth_method:
            raise InvalidArgument("Invalid Binding Rule: no AuthMethod is set", "AuthMethod")
        _, method = acl_state.acl_auth_method_get(self._store, None, rule.auth_method)
        if method is None:
            raise InvalidArgument(
                f"cannot find auth method with name {json.dumps(rule.auth_method)}", "AuthMethod"
            )
        cfg = jwt_auth.parse_config(method.config)
        try:
            validate_rule(
                rule.bind_type,
                rule.bind_name,
                rule.bind_vars_name,
                rule.selector,
                cfg.claim_mappings.values(),
            )
        except BindingError as exc:
            raise InvalidArgument(str(exc)) from None
        await self._apply(ACLBindingRuleSet(rules=(rule,)))
        _, stored = acl_state.acl_binding_rule_get(self._store, None, rule.id)
        if stored is None:
            raise Internal("Failed to retrieve binding rule after insertion")
        return binding_rule_json(stored)

    async def binding_rule_delete(self, args: Mapping[str, Any]) -> Any:
        rule_id = str(args.get("id") or "")
        _, rule = acl_state.acl_binding_rule_get(self._store, None, rule_id)
        if rule is not None:
            await self._apply(ACLBindingRuleDelete(ids=(rule_id,)))
        return True

    # ---------------------------------------------------------- login/logout

    async def _jwks(self, url: str, *, refresh: bool = False) -> list[Any]:
        """The keys at ``url``, cached for ``JWKS_CACHE_TTL`` (``refresh``:
        fetch again, as after a key rotation). Raises ``RequestError`` 500."""
        now = trio.current_time()
        cached = self._jwks_cache.get(url)
        if cached is not None:
            age = now - cached[0]
            if age < (JWKS_MIN_REFRESH if refresh else JWKS_CACHE_TTL):
                return cached[1]
        try:
            document = await trio.to_thread.run_sync(_fetch, url)
            keys = jwt_auth.jwks_keys(document)
        except (OSError, ValueError) as exc:  # JWTLoginError is a ValueError
            raise Internal(f"failed to fetch JWKS from {url}: {exc}") from None
        if len(self._jwks_cache) >= 64:
            self._jwks_cache.clear()
        self._jwks_cache[url] = (now, keys)
        return keys

    async def _claims(self, method: ACLAuthMethod, bearer: str) -> dict[str, Any]:
        cfg = jwt_auth.parse_config(method.config)
        keys = await self._jwks(cfg.jwks_url) if cfg.jwks_url else []
        try:
            return jwt_auth.validate(bearer, cfg, self.acl._clock(), keys)
        except jwt_auth.JWTLoginError as exc:
            if not cfg.jwks_url or "signature" not in str(exc):
                raise PermissionDenied(str(exc)) from None
        # The issuer may have rotated its keys since they were cached: fetch once more.
        keys = await self._jwks(cfg.jwks_url, refresh=True)
        try:
            return jwt_auth.validate(bearer, cfg, self.acl._clock(), keys)
        except jwt_auth.JWTLoginError as exc:
            raise PermissionDenied(str(exc)) from None

    def _bound_token(self, method: ACLAuthMethod, claims: dict[str, Any], meta: Any) -> ACLToken:
        cfg = jwt_auth.parse_config(method.config)
        try:
            values, lists = jwt_auth.map_claims(claims, cfg)
            _, rules = acl_state.acl_binding_rule_list(self._store, None, method.name)
            bound = bind(rules, values, lists)
        except (jwt_auth.JWTLoginError, BindingError) as exc:
            raise PermissionDenied(str(exc)) from None
        policies = [
            ACLLink(p.id)
            for name in bound.policies
            if (p := q.acl_policy_by_name(self._store, None, name)[1]) is not None
        ]
        roles = [
            ACLLink(r.id)
            for name in bound.roles
            if (r := q.acl_role_by_name(self._store, None, name)[1]) is not None
        ]
        if not (policies or roles or bound.services or bound.nodes or bound.templated):
            raise PermissionDenied("")
        description = LOGIN_DESCRIPTION
        if isinstance(meta, dict) and meta:
            # Consul's encodeLoginMeta: json.Marshal of the map (sorted, compact).
            description += ": " + json.dumps(
                {str(k): str(v) for k, v in meta.items()}, sort_keys=True, separators=(",", ":")
            )
        return ACLToken(
            "",
            "",
            description,
            policies=tuple(dict.fromkeys(policies)),
            roles=tuple(dict.fromkeys(roles)),
            service_identities=tuple(ACLServiceIdentity(s) for s in dict.fromkeys(bound.services)),
            node_identities=tuple(
                ACLNodeIdentity(n, self.acl.datacenter) for n in dict.fromkeys(bound.nodes)
            ),
            templated_policies=tuple(
                ACLTemplatedPolicy(t, n) for t, n in dict.fromkeys(bound.templated)
            ),
            local=method.token_locality != "global",
            auth_method=method.name,
        )

    async def login(self, args: Mapping[str, Any]) -> Any:
        name = str(args.get("auth_method") or "")
        bearer = str(args.get("bearer_token") or "")
        if not name:
            raise InvalidArgument("Invalid Login: no AuthMethod is set", "AuthMethod")
        if not bearer:
            raise InvalidArgument("Invalid Login: no BearerToken is set", "BearerToken")
        _, method = acl_state.acl_auth_method_get(self._store, None, name)
        if method is None:
            raise ACLNotFound(f"ACL not found: auth method {json.dumps(name)} not found")
        claims = await self._claims(method, bearer)  # outside the lock: may fetch a JWKS
        async with self.acl._lock:
            _, current = acl_state.acl_auth_method_get(self._store, None, name)
            if current is None or current.modify_index != method.modify_index:
                raise Conflict(f"auth method {json.dumps(name)} changed during login")
            token = self._bound_token(method, claims, args.get("meta"))
            token = self.acl._prepare_create(token, method.max_token_ttl or None)
            token = self.acl._normalized_token(token)
            await self._apply(ACLTokenSet(tokens=(token,)))
        log.info("event=acl_login auth_method=%s accessor=%s", name, token.accessor_id)
        return self.acl._token_json(token.accessor_id)

    async def logout(self, args: Mapping[str, Any]) -> Any:
        secret = str(args.get("auth_token") or "")
        if not secret:
            raise ACLNotFound()
        _, token = q.acl_token_by_secret(self._store, None, secret)
        if token is None or token.expired(self.acl._clock()):
            raise ACLNotFound()
        if not token.auth_method:  # only a login's token can log out
            raise PermissionDenied("")
        await self._apply(ACLTokenDelete(accessor_ids=(token.accessor_id,)))
        log.info("event=acl_logout accessor=%s", token.accessor_id)
        return True


def _decode(args: Mapping[str, Any], key: str, tp: Any) -> Any:
    try:
        return from_obj(args.get(key), tp)
    except CodecError as exc:
        raise InvalidArgument(f"Request decode failed: {exc}") from None
