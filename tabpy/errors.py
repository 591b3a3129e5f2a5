"""Every error a client can see, as a type with a status code and a message.

Hierarchy::

    TabPyError
    └── HTTPError                  an error answered with TabPy's JSON envelope
        ├── BadRequest             400
        ├── Unauthorized           401  (missing or wrong credentials; same body for every reason)
        ├── Forbidden              403  (OAuth token lacks the route's endpoint scope)
        ├── NotAcceptable          406  (credentials sent to a server without auth)
        ├── TooManyRequests        429  (too many failed logins from one client)
        ├── ScriptsDisabled        404  (TABPY_EVALUATE_ENABLE = false)
        ├── ScriptTimeout          408  (TABPY_EVALUATE_TIMEOUT expired; worker replaced)
        ├── PayloadTooLarge        413  (TABPY_MAX_REQUEST_SIZE_MB)
        └── ExecutionFailed        500  (worker crashed or hit its memory limit; replaced)
            ├── WorkerCrashed
            └── MemoryLimitExceeded

Configuration mistakes are ``tabpy.config.ConfigError``: they stop start-up
instead of reaching a client.
"""

from __future__ import annotations

import json
from typing import Any

#: TabPy's error envelope uses Python's default separators (", " and ": ") and
#: ASCII escaping; clients and TabPy's own tests compare these bytes.
_envelope_encoder = json.JSONEncoder()


def envelope(message: str, info: Any = None) -> bytes:
    """Encode ``{"message": ..., "info": ...}``; no info is written as ``{}``."""
    body = {"message": message, "info": {} if info is None else info}
    return _envelope_encoder.encode(body).encode("ascii")


class TabPyError(Exception):
    """Base class of every error this package raises on purpose."""


class HTTPError(TabPyError):
    status_code = 500

    def __init__(
        self, message: str, info: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.info = info
        self.headers = headers or {}

    def body(self) -> bytes:
        return envelope(self.message, self.info)


class BadRequest(HTTPError):
    status_code = 400


class Unauthorized(HTTPError):
    """401 with a challenge; the body never says which check failed."""

    status_code = 401

    def __init__(self, challenge: str) -> None:
        super().__init__(
            "Invalid credentials provided.",
            "Unauthorized request.",
            {"WWW-Authenticate": challenge},
        )


class Forbidden(HTTPError):
    status_code = 403

    def __init__(self, realm: str) -> None:
        super().__init__(
            "Token is missing a required endpoint scope.",
            "Forbidden request.",
            {"WWW-Authenticate": f'Bearer realm="{realm}", error="insufficient_scope"'},
        )


class TooManyRequests(HTTPError):
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many failed authentication attempts from this client.",
            f"Try again in {retry_after} seconds, with valid credentials.",
            {"Retry-After": str(retry_after)},
        )


class NotAcceptable(HTTPError):
    status_code = 406

    def __init__(self, realm: str) -> None:
        super().__init__(
            "Username or password provided when authentication not available.",
            "Not Acceptable",
            {"WWW-Authenticate": f'Basic realm="{realm}"'},
        )


class ScriptsDisabled(HTTPError):
    status_code = 404

    def __init__(self) -> None:
        super().__init__(
            "Ad-hoc scripts have been disabled on this analytics extension, "
            "please contact your administrator."
        )


class ScriptTimeout(HTTPError):
    status_code = 408

    def __init__(self, timeout_text: str) -> None:
        super().__init__(f"User defined script timed out. Timeout is set to {timeout_text} s.")


class PayloadTooLarge(HTTPError):
    status_code = 413

    def __init__(self, message: str) -> None:
        super().__init__(message, "Request Entity Too Large")


class ExecutionFailed(HTTPError):
    """The worker could not produce an answer; it has been replaced."""

    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__("Error processing script", detail)


class WorkerCrashed(ExecutionFailed):
    pass


class MemoryLimitExceeded(ExecutionFailed):
    pass
