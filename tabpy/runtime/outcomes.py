"""The one place where a worker's outcome becomes a :mod:`tabpy.errors` exception.

Transports then map those exceptions to their own bytes (HTTP: ``tabpy.server.http_errors``).
A successful reply, and a request to run a table job, are returned untouched. Failures of user
code are logged here, at ERROR, as TabPy does: the exception's type and message and the line
of the script, with the request id the log adds, but never the data the code ran on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tabpy.errors import InvalidRequest, MemoryLimitExceeded, TabPyError
from tabpy.runtime.protocol import Outcome, Reply
from tabpy.runtime.runtime_errors import QUERY_FAILED_INFO, QueryUnanswered, ScriptFailed, shorten

__all__ = ["error_of", "raise_for_outcome"]

logger = logging.getLogger(__name__)

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
    if error is None:
        return reply
    if reply.failure is not None:
        _log_failure(reply)
    raise error


def _log_failure(reply: Reply) -> None:
    failure = reply.failure
    assert failure is not None
    where = f" on line {failure.line}" if failure.line is not None else ""
    explained = ""
    if reply.outcome is Outcome.QUERY_UNANSWERED and isinstance(reply.info, str):
        explained = reply.info.removeprefix(QUERY_FAILED_INFO).strip()
        explained = f" ({shorten(explained)})" if explained else ""
    logger.error(
        "User code failed%s: %s: %s%s", where, failure.exception, failure.message, explained
    )
