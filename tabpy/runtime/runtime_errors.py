"""Errors of running user code, and how an exception from user code is described.

Hierarchy (under :mod:`tabpy.errors`)::

    ExecutionFailed
    └── ScriptFailed         user code raised; message and info as the worker described it
    NotFound
    └── QueryUnanswered      a script's tabpy.query(...)['response'] found no response

Workers never raise these: they reply with an outcome (:mod:`tabpy.runtime.protocol`), and the
server turns it into one of these (:mod:`tabpy.runtime.outcomes`).
"""

from __future__ import annotations

from typing import Any

from tabpy.errors import SCRIPT_ERROR, ExecutionFailed, NotFound, TabPyError
from tabpy.runtime.encoding import NotSerializable

__all__ = [
    "QUERY_FAILED_INFO",
    "QueryUnanswered",
    "ScriptFailed",
    "describe",
    "exception_name",
    "shorten",
]

#: Longest exception message a log line carries (a message may quote a whole argument).
LOGGED_MESSAGE_CHARS = 300

#: TabPy's words when ``tabpy.query(...)['response']`` fails inside a script.
QUERY_FAILED_INFO = (
    "The endpoint you're trying to query did not respond. Please make sure the endpoint "
    "exists and the correct set of arguments are provided."
)


def exception_name(exc: BaseException) -> str:
    return "TypeError" if isinstance(exc, NotSerializable) else type(exc).__name__


def describe(exc: BaseException) -> str:
    """TabPy's ``<ExceptionClass> : <message>`` form of an exception."""
    return f"{exception_name(exc)} : {exc}"


def shorten(text: str, limit: int = LOGGED_MESSAGE_CHARS) -> str:
    """``text`` on one line and at most ``limit`` characters, for a log."""
    flat = text.replace("\r", "\\r").replace("\n", "\\n")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class ScriptFailed(ExecutionFailed):
    """A script or an endpoint raised, or its object could not be loaded."""

    def __init__(self, message: str, info: Any = None) -> None:
        TabPyError.__init__(self, message, info)


class QueryUnanswered(NotFound):
    """``tabpy.query(...)['response']`` raised ``KeyError``: the query had no response."""

    def __init__(self, info: Any = QUERY_FAILED_INFO) -> None:
        super().__init__(SCRIPT_ERROR, info)
