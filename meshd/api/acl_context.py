"""The caller's ACL authorizer as API handlers see it.

The ACL layer in front of the route table resolves the request's token
(``X-Consul-Token``, ``Authorization: Bearer`` or ``?token=``) and stores the
resulting ``ACLAuthorizer`` on the request before the handler runs. With ACLs
disabled every request gets the management authorizer, so handlers can
always ask ``authorizer(req)`` without caring whether ACLs are on.
"""

from __future__ import annotations

import contextvars

from ..acl import authorizer as acl_authorizer
from ..acl.authorizer import ACLAuthorizer
from ..http import Request

_MANAGE = acl_authorizer.manage_all()

# The authorizer of the request being handled, so the agent's registry reads
# can filter their answers (the agent's read) without every handler passing it on.
# trio tasks inherit it only from the request's own task.
current: contextvars.ContextVar[ACLAuthorizer | None] = contextvars.ContextVar(
    "meshd_acl_authorizer", default=None
)


def authorizer(req: Request) -> ACLAuthorizer:
    """The authorizer of ``req``'s token (management when ACLs are off)."""
    authz = req.authz
    return authz if isinstance(authz, ACLAuthorizer) else _MANAGE


# The secret of the request being handled (None outside requests): client
# agents forward it with the writes they send to servers.
secret: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "meshd_acl_secret", default=None
)
