"""The ACL context of the request being handled (API handlers and the agent).

The ACL layer in front of the route table resolves the request's token
(``X-Consul-Token``, ``Authorization: Bearer`` or ``?token=``) and stores the
resulting ``ACLAuthorizer`` on the request before the handler runs. With ACLs
disabled every request gets the management authorizer, so handlers can
always ask ``authorizer(req)`` without caring whether ACLs are on.

It lives below meshd.api and meshd.agent (it names no HTTP type) because
both use it: the router sets it, the agent's reads filter by it and client
agents forward its secret with their writes.
"""

from __future__ import annotations

import contextvars
from typing import Any, Protocol

from . import authorizer as acl_authorizer
from .authorizer import ACLAuthorizer

_MANAGE = acl_authorizer.manage_all()

# The authorizer of the request being handled, so the agent's registry reads
# can filter their answers (the agent's read) without every handler passing it on.
# trio tasks inherit it only from the request's own task.
current: contextvars.ContextVar[ACLAuthorizer | None] = contextvars.ContextVar(
    "meshd_acl_authorizer", default=None
)


class HasAuthz(Protocol):
    """A request the ACL layer has resolved (meshd.http.Request)."""

    authz: Any


def authorizer(req: HasAuthz) -> ACLAuthorizer:
    """The authorizer of ``req``'s token (management when ACLs are off)."""
    authz = req.authz
    return authz if isinstance(authz, ACLAuthorizer) else _MANAGE


# The secret of the request being handled (None outside requests): client
# agents forward it with the writes they send to servers.
secret: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "meshd_acl_secret", default=None
)
