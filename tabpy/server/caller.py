"""Who is calling, as a key the worker pool can keep callers apart by."""

from __future__ import annotations

from starlette.requests import Request

from tabpy.security.principal import Principal
from tabpy.server.auth_middleware import STATE_KEY

__all__ = ["caller_key"]


def caller_key(request: Request) -> str:
    """``"basic:alice"``, ``"bearer:<sub>"``, or ``""`` for an anonymous caller.

    Two requests with the same key may share a worker; see ``PoolOptions.isolate_callers``.
    """
    principal: Principal | None = getattr(request.state, STATE_KEY, None)
    if principal is None or principal.user is None:
        return ""
    return f"{principal.scheme}:{principal.user}"
