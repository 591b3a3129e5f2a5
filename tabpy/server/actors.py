"""Who an HTTP request acts as, in the words of the audit trail.

The audit records the principal as a reference (``user:alice``; a bearer token's ``sub`` is a
user too), or ``anonymous`` on a server without authentication; the client's address as
:class:`~tabpy.server.proxy_headers.ProxyHeaders` resolved it; and the request id that the
access log and the ``X-Request-ID`` response header carry, so an entry leads to its log lines.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from tabpy.logs import current_request_id
from tabpy.registry.audit import Actor
from tabpy.security.principal import ANONYMOUS, Principal
from tabpy.security.roles import USER_PREFIX

__all__ = ["PRINCIPAL_KEY", "actor_of", "principal_of", "principal_text"]

#: Where ``AuthMiddleware`` keeps the principal: ``request.state.principal``.
PRINCIPAL_KEY = "principal"


def principal_of(request: Request) -> Principal:
    """The principal ``AuthMiddleware`` authenticated (anonymous on routes it does not guard)."""
    principal: Principal = request.scope.get("state", {}).get(PRINCIPAL_KEY, ANONYMOUS)
    return principal


def principal_text(principal: Principal) -> str:
    if principal.user is not None:
        return USER_PREFIX + principal.user.lower()
    return "bearer token without sub" if principal.scheme == "bearer" else "anonymous"


def actor_of(scope: Scope, principal: Principal) -> Actor:
    client = scope.get("client")
    request_id = current_request_id.get()
    return Actor(
        principal_text(principal),
        client[0] if client else None,
        None if request_id == "-" else request_id,
    )
