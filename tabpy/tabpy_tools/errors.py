"""Every error the client raises on purpose.

Hierarchy::

    ClientError
    ├── ResponseError               the server answered with an unexpected status
    │   ├── BadRequestError         400
    │   ├── AuthenticationError     401, or 406 (credentials sent to a server without auth)
    │   ├── ForbiddenError          403
    │   ├── NotFoundError           404
    │   ├── PayloadTooLargeError    413
    │   └── ServerError             5xx
    ├── ServerUnreachableError      no HTTP reply at all (refused, DNS, TLS, reset)
    ├── RequestTimeoutError         no reply within ``Client.query_timeout`` seconds
    ├── InvalidArgumentError        a bad argument, caught before anything is sent
    ├── InvalidEndpointInfoError    ``update_endpoint_info`` with a value of the wrong type
    ├── EndpointExistsError         ``deploy`` over an existing name without ``override``
    ├── EndpointNotFoundError       ``update_endpoint_info`` on a name the server does not know
    ├── DeploymentError             the server took the deployment but could not serve it
    │   ├── LoadFailedError         ``/status`` reported ``LoadFailed``
    │   └── DeploymentTimeoutError  still not loaded when the deadline passed
    └── SchemaError                 ``generate_schema`` descriptions do not fit the example

Each class also derives from the built-in exception TabPy 2.16's client raised in the same
situation (``RuntimeError``, ``ValueError``, ...), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only annotations: the error types must import without an HTTP library
    import httpx

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ClientError",
    "DeploymentError",
    "DeploymentTimeoutError",
    "EndpointExistsError",
    "EndpointNotFoundError",
    "ForbiddenError",
    "InvalidArgumentError",
    "InvalidEndpointInfoError",
    "LoadFailedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RequestTimeoutError",
    "ResponseError",
    "SchemaError",
    "ServerError",
    "ServerUnreachableError",
]


class ClientError(Exception):
    """Base class of every error raised on purpose by ``tabpy.tabpy_tools``."""


class ResponseError(ClientError, RuntimeError):
    """The server answered with a status the operation does not expect.

    ``message`` and ``info`` come from TabPy's error envelope
    ``{"message": ..., "info": ...}``; a reply without that envelope (an HTML error page, say)
    gives its raw text as ``message`` and ``None`` as ``info``.
    """

    def __init__(self, status_code: int, message: str, info: Any = None) -> None:
        super().__init__(status_code, message, info)
        self.status_code = status_code
        self.message = message
        self.info = info

    def __str__(self) -> str:
        return f"({self.status_code}) {self.message} {self.info}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ResponseError:
        """Build the subclass matching ``response.status_code``."""
        message: str = response.text
        info: Any = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "message" in body and "info" in body:
            message, info = str(body["message"]), body["info"]
        code = response.status_code
        error_class = _BY_STATUS.get(code, ServerError if code >= 500 else ResponseError)
        return error_class(code, message, info)


class BadRequestError(ResponseError):
    """400: the server rejected the request; ``message`` says what to change."""


class AuthenticationError(ResponseError):
    """401 (missing or wrong credentials) or 406 (credentials sent to a server without auth)."""


class ForbiddenError(ResponseError):
    """403: the credentials are valid but lack the scope this operation needs."""


class NotFoundError(ResponseError):
    """404: unknown endpoint, or a base URL that does not point at the server's routes."""


class PayloadTooLargeError(ResponseError):
    """413: the request body (a query's data or a deployed object) exceeds the server's limit."""


class ServerError(ResponseError):
    """5xx: the server failed, e.g. the deployed function raised."""


_BY_STATUS: dict[int, type[ResponseError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    406: AuthenticationError,
    413: PayloadTooLargeError,
}


class ServerUnreachableError(ClientError, ConnectionError):
    """No HTTP reply at all: connection refused, name resolution, TLS handshake, reset."""


class RequestTimeoutError(ClientError, TimeoutError):
    """The server did not answer within ``Client.query_timeout`` seconds."""


class InvalidArgumentError(ClientError, ValueError):
    """An argument is invalid; nothing was sent to the server."""


class InvalidEndpointInfoError(ClientError, RuntimeError):
    """``update_endpoint_info`` got a value of the wrong type; nothing was sent."""


class EndpointExistsError(ClientError, RuntimeError):
    """``deploy`` without ``override=True`` for a name that is already deployed."""


class EndpointNotFoundError(ClientError, RuntimeError):
    """The operation needs an endpoint that the server does not know."""


class DeploymentError(ClientError, RuntimeError):
    """The server accepted the deployment but does not serve it."""


class LoadFailedError(DeploymentError):
    """The server could not load the deployed object; ``last_error`` is its reason."""

    def __init__(self, name: str, version: int, last_error: str | None) -> None:
        super().__init__(f"LoadFailed: {last_error}")
        self.name = name
        self.version = version
        self.last_error = last_error

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.version, self.last_error))


class DeploymentTimeoutError(DeploymentError, TimeoutError):
    """The deployed version was still not loaded when the deadline passed."""


class SchemaError(ClientError, ValueError):
    """A ``generate_schema`` description does not match the shape of its example."""
