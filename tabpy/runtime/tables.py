"""Table input and output for ``/evaluate``: a strategy a feature package provides.

A request may name a table stored beforehand (``"dataPath"``) instead of sending its data as
JSON. The worker that parses the request recognises that (``Outcome.TABLE_REQUEST``) when the
server has a table evaluator, and the server hands the request to it. Arrow Flight is the one
implementation (``tabpy.arrow.service``); the core knows only this protocol.
"""

from __future__ import annotations

from typing import Protocol

from tabpy.runtime.protocol import TableRequest

__all__ = ["TableEvaluator", "TableRequest"]


class TableEvaluator(Protocol):
    async def evaluate_table(self, request: TableRequest) -> bytes:
        """Run ``request`` on its stored table; the answer's exact bytes.

        Raises :mod:`tabpy.errors` exceptions, as the worker pool does.
        """
