"""The one place where a worker's outcome becomes a :mod:`tabpy.errors` exception.

Transports then map those exceptions to their own bytes (HTTP: ``tabpy.server.http_errors``).
A successful reply, and a request to run a table job, are returned untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tabpy.errors import InvalidRequest, MemoryLimitExceeded, TabPyError
from tabpy.runtime.protocol import Outcome, Reply
from tabpy.runtime.runtime_errors import QueryUnanswered, ScriptFailed

__all__ = ["error_of", "raise_for_outcome"]

_ERRORS: dict[Outcome, Callable[[str, Any], TabPyError]] = {
    Outcome.INVALID_REQUEST: InvalidRequest,
    Outcome.FAILED: ScriptFailed,
    Outcome.QUERY_UNANSWERED: lambda message, info: QueryUnanswered(info),
    Outcome.MEMORY_EXCEEDED: lambda message, info: MemoryLimitExceeded(str(info)),
}


def error_of(reply: Reply) -> TabPyError | None:
    """The exception a reply stands for; None for OK and TABLE_REQUEST."""
    make = _ERRORS.get(reply.outcome)
    return None if make is None else make(reply.message, reply.info)


def raise_for_outcome(reply: Reply) -> Reply:
    error = error_of(reply)
    if error is not None:
        raise error
    return reply
