"""Who an HTTP request acts as: in the audit trail, and in the scripts it runs.

The audit records the principal as a reference (``user:alice``; a bearer token's ``sub`` is a
user too), or ``anonymous`` on a server without authentication; the client's address as
:class:`~tabpy.server.proxy_headers.ProxyHeaders` resolved it; and the request id that the
access log and the ``X-Request-ID`` response header carry, so an entry leads to its log lines.

A script's ``tabpy.query(...)`` runs with its caller's rights (:func:`query_check`): the
roles and endpoint callers of ``TABPY_AUTHZ``, and the query scope when OAuth endpoint scopes
are enforced, as TabPy's loopback call carried the caller's token.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from tabpy.config import Settings
from tabpy.errors import InsufficientScope
from tabpy.logs import current_request_id
from tabpy.registry.audit import Actor
from tabpy.runtime.protocol import QueryCheck, Refused
from tabpy.security.access import Authorization
from tabpy.security.principal import ANONYMOUS, Principal
from tabpy.security.roles import audit_name

__all__ = ["PRINCIPAL_KEY", "actor_of", "caller_key", "key_of", "principal_of", "query_check"]

#: Where ``AuthMiddleware`` keeps the principal: ``request.state.principal``.
PRINCIPAL_KEY = "principal"


def principal_of(request: Request) -> Principal:
    """The principal ``AuthMiddleware`` authenticated (anonymous on routes it does not guard)."""
    principal: Principal = request.scope.get("state", {}).get(PRINCIPAL_KEY, ANONYMOUS)
    return principal


def caller_key(request: Request) -> str:
    """``"basic:alice"``, ``"bearer:<sub>"``, or ``""`` for an anonymous caller.

    The worker pool keeps callers with different keys on different workers
    (``PoolOptions.isolate_callers``); requests with the same key may share one.
    """
    return key_of(principal_of(request))


def key_of(principal: Principal) -> str:
    """:func:`caller_key` of ``principal``, for a path without a request object."""
    return "" if principal.user is None else f"{principal.scheme}:{principal.user}"


def actor_of(scope: Scope, principal: Principal) -> Actor:
    client = scope.get("client")
    request_id = current_request_id.get()
    return Actor(
        audit_name(principal),
        client[0] if client else None,
        None if request_id == "-" else request_id,
    )


def query_check(
    principal: Principal, authorization: Authorization, settings: Settings
) -> QueryCheck | None:
    """What ``principal``'s scripts may ``tabpy.query``; None when nothing is checked."""
    scope = settings.oauth_query_scope
    needs_scope = (
        settings.oauth_enforce_endpoint_scopes
        and principal.scheme == "bearer"
        and scope not in principal.scopes
    )
    if not authorization.enabled and not needs_scope:
        return None

    def check(name: str) -> Refused | None:
        if needs_scope:
            missing = InsufficientScope()
            return Refused(missing.message, missing.info)
        refusal = authorization.query_refusal(principal, name)
        return None if refusal is None else Refused(refusal.message, refusal.info)

    return check
