"""Every error a caller can see, as a type with a message; no transport details.

The core raises these; each transport maps them to its wire bytes in one place
(HTTP: :mod:`tabpy.server.http_errors`; Arrow Flight: :mod:`tabpy.arrow.flight_errors`).
``message`` and ``info`` are the words a caller is shown, so they say what to change.

Hierarchy::

    TabPyError
    ├── InvalidRequest             the request breaks a rule of the API
    ├── NotAuthenticated           missing or wrong credentials (same words for every reason)
    ├── InsufficientScope          a bearer token lacks the route's endpoint scope
    ├── PermissionDenied           TABPY_AUTHZ: a missing role, or not an owner of the endpoint
    ├── CredentialsNotExpected     credentials sent to a server without authentication
    ├── TooManyFailures            too many failed logins from one client
    ├── NotFound                   the thing named does not exist (or is switched off)
    │   └── ScriptsDisabled        TABPY_EVALUATE_ENABLE = false
    ├── Conflict                   another request changed the same thing first; retry
    ├── PayloadTooLarge            TABPY_MAX_REQUEST_SIZE_MB
    ├── ServiceUnavailable         a dependency (the registry) cannot be reached right now
    ├── ScriptTimeout              TABPY_EVALUATE_TIMEOUT expired; the worker was replaced
    └── ExecutionFailed            the script could not produce an answer
        ├── WorkerCrashed          its worker died; replaced
        └── MemoryLimitExceeded    its worker hit TABPY_WORKER_MEMORY_LIMIT_MB; replaced

Other packages extend these (``tabpy.runtime.runtime_errors``,
``tabpy.registry.registry_errors``, ``tabpy.arrow.arrow_errors``, ``tabpy.models.errors``).
Configuration mistakes are ``tabpy.config.ConfigError``: they stop start-up instead of reaching
a caller.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "CredentialsNotExpected",
    "ExecutionFailed",
    "InsufficientScope",
    "InvalidRequest",
    "MemoryLimitExceeded",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "SCRIPT_ERROR",
    "ScriptTimeout",
    "ScriptsDisabled",
    "ServiceUnavailable",
    "TabPyError",
    "TooManyFailures",
    "WorkerCrashed",
]

#: TabPy's message for every failure of a script or of the worker running it.
SCRIPT_ERROR = "Error processing script"


class TabPyError(Exception):
    """Base class of every error this package raises on purpose.

    ``info`` is extra detail for the caller (a string or a JSON-able object); None when
    there is nothing to add.
    """

    def __init__(self, message: str, info: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.info = info


class InvalidRequest(TabPyError):
    """The request is malformed or breaks a rule; the message says which."""


class NotAuthenticated(TabPyError):
    """No valid credentials. ``scheme`` ("basic" or "bearer") is the one to ask for."""

    def __init__(self, scheme: str) -> None:
        super().__init__("Invalid credentials provided.", "Unauthorized request.")
        self.scheme = scheme


class InsufficientScope(TabPyError):
    def __init__(self) -> None:
        super().__init__("Token is missing a required endpoint scope.", "Forbidden request.")


class PermissionDenied(TabPyError):
    """Authenticated, but not allowed: a missing role or ownership (``TABPY_AUTHZ = on``).

    ``message`` names what is missing and who can grant it, never a 404 that hides the reason.
    """

    def __init__(self, message: str, info: Any = "Forbidden request.") -> None:
        super().__init__(message, info)


class CredentialsNotExpected(TabPyError):
    """Credentials were sent to a server that has no authentication (the client is confused)."""

    def __init__(self) -> None:
        super().__init__(
            "Username or password provided when authentication not available.", "Not Acceptable"
        )


class TooManyFailures(TabPyError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many failed authentication attempts from this client.",
            f"Try again in {retry_after} seconds, with valid credentials.",
        )
        self.retry_after = retry_after


class NotFound(TabPyError):
    """What the request names does not exist."""


class ScriptsDisabled(NotFound):
    def __init__(self) -> None:
        super().__init__(
            "Ad-hoc scripts have been disabled on this analytics extension, "
            "please contact your administrator."
        )


class Conflict(TabPyError):
    """A concurrent change (possibly on another instance) won the race for the same thing.

    Nothing was changed by this request; sending it again decides it against the new state.
    """


class PayloadTooLarge(TabPyError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "Request Entity Too Large")


class NotSupported(TabPyError):
    """This server lacks an optional part the request needs (an extra not installed).

    Not the request's fault, and sending it again changes nothing until the server's
    administrator installs what the message names.
    """


class ServiceUnavailable(TabPyError):
    """Temporarily impossible; ``retry_after`` (seconds) says when to try again, if known."""

    def __init__(self, message: str, info: Any = None, retry_after: int | None = None) -> None:
        super().__init__(message, info)
        self.retry_after = retry_after


class ScriptTimeout(TabPyError):
    """``timeout_text`` is the configured timeout as TabPy shows it (``30``, or ``3.0``)."""

    def __init__(self, timeout_text: str) -> None:
        super().__init__(f"User defined script timed out. Timeout is set to {timeout_text} s.")


class ExecutionFailed(TabPyError):
    """The script, or the worker running it, could not produce an answer."""

    def __init__(self, detail: str) -> None:
        super().__init__(SCRIPT_ERROR, detail)


class WorkerCrashed(ExecutionFailed):
    pass


class MemoryLimitExceeded(ExecutionFailed):
    pass
