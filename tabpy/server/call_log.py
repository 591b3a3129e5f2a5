"""The request-context line of ``TABPY_LOG_DETAILS`` (TabPy's "call context logging").

One INFO line per API request, once authentication is decided, in TabPy's format::

    Call ID: <request id>, Caller: <ip>, Method: <METHOD>, URL: <url>[, Client: <TabPy-Client>]
    [, Tableau user: <TabPy-User>][, TabPy user: <user>]

The call ID is the request id (``X-Request-ID``), so the line can be matched with the access
log and the client's reply. ``TabPy user`` is the Basic username as sent (also when it was
refused), or the token's ``sub`` when ``TABPY_OAUTH_LOG_USER`` is on. Passwords, tokens and
the ``Authorization`` header never appear. Values come from the client, so control
characters are escaped to keep one request on one log line.
"""

from __future__ import annotations

import logging
import uuid

from starlette.requests import Request

from tabpy.config import Settings
from tabpy.logs import current_request_id
from tabpy.security.authorization import parse_basic
from tabpy.security.log_text import printable
from tabpy.security.principal import Principal

__all__ = ["log_call"]

logger = logging.getLogger("tabpy.server.calls")


def log_call(request: Request, principal: Principal | None, settings: Settings) -> None:
    """Log the call-context line if enabled; ``principal`` is None for a refused request."""
    if not settings.log_details:
        return
    client = request.client.host if request.client else "-"
    parts = [
        f"Call ID: {_call_id()}",
        f"Caller: {printable(client)}",
        f"Method: {printable(request.method)}",
        f"URL: {printable(str(request.url))}",
    ]
    tableau_client = request.headers.get("tabpy-client")
    if tableau_client:
        parts.append(f"Client: {printable(tableau_client)}")
    tableau_user = request.headers.get("tabpy-user")
    if tableau_user:
        parts.append(f"Tableau user: {printable(tableau_user)}")
    user = _tabpy_user(request, principal, settings)
    if user:
        parts.append(f"TabPy user: {printable(user)}")
    logger.info(", ".join(parts))


def _call_id() -> str:
    request_id = current_request_id.get()
    return str(uuid.uuid4()) if request_id == "-" else request_id


def _tabpy_user(request: Request, principal: Principal | None, settings: Settings) -> str | None:
    if principal is not None and principal.scheme == "bearer":
        return principal.user if settings.oauth_log_user else None
    if principal is not None and principal.scheme == "basic":
        return principal.user
    header = request.headers.get("authorization")
    credentials = parse_basic(header) if header else None
    return credentials[0] if credentials else None
