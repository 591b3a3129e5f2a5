"""Errors of the Arrow Flight feature.

Hierarchy (under :mod:`tabpy.errors`)::

    TabPyError
    ├── StoreFull          a table does not fit in TABPY_ARROW_MAX_STORE_MB
    └── ShutdownRefused    the caller may not stop the Flight listener
    NotFound
    ├── FlightNotFound     no table is stored under a descriptor or ticket
    └── UnknownAction      a Flight action this server does not have
    ExecutionFailed
    └── TableNotFound      /evaluate named a dataPath the store does not hold
    ServiceUnavailable
    └── TransferFailed     the fleet member holding a table failed while sending it

Flight calls report these as :mod:`tabpy.arrow.flight_errors` maps them; ``/evaluate`` answers
with TabPy's error envelope (TabPy reports a missing table as a failed script).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from tabpy.errors import ExecutionFailed, NotFound, ServiceUnavailable, TabPyError

__all__ = [
    "NOT_FOUND",
    "FlightNotFound",
    "ShutdownRefused",
    "StoreFull",
    "TableNotFound",
    "TransferFailed",
    "UnknownAction",
    "megabytes",
]

#: TabPy's words for a missing table; clients may look for them.
NOT_FOUND = "Flight not found."

_MB = 1024 * 1024


def megabytes(nbytes: int) -> str:
    return f"{nbytes / _MB:.1f} MB"


class StoreFull(TabPyError):
    """Storing a table would take the store over ``TABPY_ARROW_MAX_STORE_MB``."""

    def __init__(self, needed: int, available: int, limit: int) -> None:
        super().__init__(
            f"The Arrow Flight store is full: this table needs {megabytes(needed)} more, and "
            f"only {megabytes(max(available, 0))} of TABPY_ARROW_MAX_STORE_MB = "
            f"{limit // _MB} MB are free. Fetch (DoGet) or clear the stored tables, or raise "
            "TABPY_ARROW_MAX_STORE_MB."
        )


class TableNotFound(ExecutionFailed):
    def __init__(self, path: str, ttl_text: str) -> None:
        super().__init__(
            f"KeyError : '{NOT_FOUND}' No table is stored under dataPath {path!r}: put it with "
            "DoPut first. A table is removed once it is fetched or used by /evaluate, and after "
            f"{ttl_text} s if nobody fetches it (TABPY_ARROW_ENTRY_TTL_SECONDS).",
        )


class FlightNotFound(NotFound):
    def __init__(self, key: Hashable | None) -> None:
        super().__init__(
            f"{NOT_FOUND} No table is stored under {key!r}: tables are removed once fetched "
            "(DoGet) or used by /evaluate, and expire if nobody fetches them."
        )


class UnknownAction(NotFound):
    def __init__(self, action: str, known: Iterable[str]) -> None:
        super().__init__(f"Unknown action {action!r}: use one of {', '.join(known)}")


class ShutdownRefused(TabPyError):
    """``message`` says who may shut down, and how to allow it."""


class TransferFailed(ServiceUnavailable):
    """Another member of the fleet held the table but stopped sending it part-way."""

    def __init__(self, owner: str) -> None:
        super().__init__(
            f"The table was on another instance ({owner}), which failed while sending it here; "
            "the table is lost. Put it again (DoPut) and retry.",
            retry_after=1,
        )
