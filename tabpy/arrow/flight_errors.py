"""The one place where errors become what an Arrow Flight client sees.

Flight handlers raise :mod:`tabpy.errors` types (and :mod:`tabpy.arrow.arrow_errors`) and wrap
their work in :func:`flight_errors`, which turns them into the exceptions pyarrow sends as gRPC
statuses. The choices follow TabPy, whose clients catch them:

* a missing table or an unknown action is a ``KeyError``; pyarrow sends it as gRPC
  ``NOT_FOUND`` and the client raises ``pyarrow.lib.ArrowKeyError`` (a ``KeyError``);
* refusals use Flight's own statuses (unauthenticated, unauthorized, unavailable); a missing
  role (``TABPY_AUTHZ``) is unauthorized, with the message naming the role;
* anything else the server knows about is a ``FlightServerError`` with the error's message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyarrow.flight as flight

from tabpy.arrow.arrow_errors import ShutdownRefused
from tabpy.errors import (
    InsufficientScope,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    TabPyError,
    TooManyFailures,
)

__all__ = ["flight_error", "flight_errors"]


def flight_error(error: TabPyError) -> Exception:
    """The exception a Flight handler raises for ``error``."""
    if isinstance(error, NotFound):
        return KeyError(error.message)
    if isinstance(error, (NotAuthenticated, TooManyFailures)):
        return flight.FlightUnauthenticatedError(error.message)
    if isinstance(error, (InsufficientScope, PermissionDenied, ShutdownRefused)):
        return flight.FlightUnauthorizedError(error.message)
    if isinstance(error, ServiceUnavailable):
        return flight.FlightUnavailableError(error.message)
    return flight.FlightServerError(error.message)


@contextlib.contextmanager
def flight_errors() -> Iterator[None]:
    """Run a Flight handler's work, raising its errors the way Flight clients expect."""
    try:
        yield
    except TabPyError as error:
        raise flight_error(error) from None
