"""The one place where errors become HTTP responses.

Handlers raise :mod:`tabpy.errors` types and never build error replies themselves; the
Starlette exception handler installed by :func:`install` (and ``AuthMiddleware``, which runs
before routing) turns them into TabPy's ``{"message": ..., "info": ...}`` envelope with the
status and headers below. An exception nobody anticipated still gets an envelope, never a
plain-text page.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import (
    Conflict,
    CredentialsNotExpected,
    ExecutionFailed,
    InsufficientScope,
    InvalidRequest,
    NotAuthenticated,
    NotFound,
    NotSupported,
    PayloadTooLarge,
    PermissionDenied,
    ScriptsDisabled,
    ScriptTimeout,
    ServiceUnavailable,
    TabPyError,
    TooManyFailures,
)
from tabpy.security.log_text import printable
from tabpy.server.cors import CORS_EXEMPT
from tabpy.server.responses import JSON, RawResponse

__all__ = [
    "GATE_ERRORS",
    "client_disconnected",
    "envelope",
    "error_response",
    "handler",
    "status_of",
    "unexpected_error",
]

logger = logging.getLogger(__name__)

#: TabPy's envelope uses Python's default separators (", " and ": ") and ASCII escaping;
#: clients and TabPy's own tests compare these bytes.
_envelope_encoder = json.JSONEncoder()

#: Status per error type; the most specific class along the error's MRO wins.
_STATUS: dict[type[TabPyError], int] = {
    InvalidRequest: 400,
    NotAuthenticated: 401,
    InsufficientScope: 403,
    PermissionDenied: 403,
    NotFound: 404,
    CredentialsNotExpected: 406,
    ScriptTimeout: 408,
    Conflict: 409,
    PayloadTooLarge: 413,
    TooManyFailures: 429,
    ExecutionFailed: 500,
    NotSupported: 501,
    ServiceUnavailable: 503,
}

#: Refusals TabPy gives before a route's own work, so without its CORS headers.
GATE_ERRORS: tuple[type[TabPyError], ...] = (
    NotAuthenticated,
    InsufficientScope,
    CredentialsNotExpected,
    TooManyFailures,
    PayloadTooLarge,
    ScriptsDisabled,
)


def envelope(message: str, info: Any = None) -> bytes:
    """TabPy's error body, ``{"message": ..., "info": ...}``; no info is written as ``{}``."""
    body = {"message": message, "info": {} if info is None else info}
    return _envelope_encoder.encode(body).encode("ascii")


def status_of(error: TabPyError) -> int:
    for cls in type(error).__mro__:
        status = _STATUS.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 500


def error_response(error: TabPyError, realm: str) -> RawResponse:
    """The reply for ``error``; ``realm`` names the server in authentication challenges."""
    return RawResponse(
        envelope(error.message, error.info), status_of(error), JSON, _headers(error, realm)
    )


def _headers(error: TabPyError, realm: str) -> dict[str, str]:
    if isinstance(error, NotAuthenticated):
        return {"WWW-Authenticate": f'{error.scheme.capitalize()} realm="{realm}"'}
    if isinstance(error, InsufficientScope):
        return {"WWW-Authenticate": f'Bearer realm="{realm}", error="insufficient_scope"'}
    if isinstance(error, CredentialsNotExpected):
        return {"WWW-Authenticate": f'Basic realm="{realm}"'}
    if isinstance(error, (TooManyFailures, ServiceUnavailable)) and error.retry_after:
        return {"Retry-After": str(error.retry_after)}
    return {}


def handler(realm: str) -> Any:
    """The Starlette exception handler for every :class:`TabPyError`."""

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TabPyError)
        if isinstance(exc, GATE_ERRORS):
            request.scope[CORS_EXEMPT] = True
        return error_response(exc, realm)

    return handle


async def client_disconnected(request: Request, exc: Exception) -> Response:
    """The client went away before its whole body arrived (or sent one the HTTP edge refused
    mid-way): nothing failed here, and nobody reads the reply. One line, no traceback."""
    logger.info(
        "Client disconnected during %s %s",
        printable(request.method, 20),
        printable(request.url.path, 200),
    )
    info = "The connection closed before the whole request body arrived."
    return RawResponse(envelope("Incomplete request", info), 400, JSON)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug or an unforeseen failure: logged with its traceback, answered with an envelope."""
    logger.error(
        "Unexpected %s while serving %s %s",
        type(exc).__name__,
        printable(request.method, 20),
        printable(request.url.path, 200),  # the client's: no line breaks in the log
        exc_info=exc,
    )
    info = "The server failed unexpectedly; the log has the details."
    return RawResponse(envelope("Internal server error", info), 500, JSON)
