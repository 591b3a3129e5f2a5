"""Table input and output for ``/evaluate``: a strategy a feature package provides.

A request may name a table stored beforehand (``"dataPath"``) instead of sending its data as
JSON. The worker that parses the request recognises that (``Outcome.TABLE_REQUEST``) when the
server has a table evaluator, and the server hands the request to it. Arrow Flight is the one
implementation (``tabpy.arrow.service``); the core knows only this protocol.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from tabpy.runtime.protocol import QueryCheck, TableRequest

__all__ = ["TableEvaluator", "TableRequest", "TableService"]


class TableEvaluator(Protocol):
    async def evaluate_table(
        self, request: TableRequest, may_query: QueryCheck | None = None
    ) -> bytes:
        """Run ``request`` on its stored table; the answer's exact bytes.

        ``may_query`` is what the script may ``tabpy.query`` (``Job.may_query``). Raises
        :mod:`tabpy.errors` exceptions, as the worker pool does.
        """


class TableService(TableEvaluator, Protocol):
    """A table evaluator with a listener of its own, run beside the HTTP server."""

    def start(self, loop: asyncio.AbstractEventLoop) -> int:
        """Start listening; the port. Raises ``ConfigError`` if it cannot."""

    async def stop(self, timeout: float) -> None:
        """Stop listening, letting calls in flight finish for up to ``timeout`` seconds."""

    def close(self) -> None:
        """Free every stored table (after ``stop``)."""

    @property
    def stopped(self) -> bool:
        """True once the listener has stopped (or never started)."""
