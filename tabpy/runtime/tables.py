"""Table input and output for ``/evaluate``: a strategy a feature package provides.

A request may name a table stored beforehand (``"dataPath"``) instead of sending its data as
JSON. When the server has a table evaluator, it hands such a request to it. Arrow Flight is the
one implementation (``tabpy.arrow.service``); the core knows only this protocol.

Who recognises a table request: the server itself when the body is small and plainly one
(:func:`table_request`), which spares the request a trip to a worker and back, a good part of
a small Prep table's time; otherwise the worker that parses the body
(``Outcome.TABLE_REQUEST``). Both apply the same rules
(:func:`tabpy.runtime.evaluate.parse_request`), and any body the server does not recognise,
an invalid one included, goes to a worker as before, so every error keeps its bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import orjson

from tabpy.errors import TabPyError
from tabpy.runtime.evaluate import parse_request
from tabpy.runtime.protocol import QueryCheck, TableRequest

__all__ = [
    "RECOGNISED_MAX_BYTES",
    "TableEvaluator",
    "TableRequest",
    "TableService",
    "table_request",
]

#: Larger bodies go to a worker unparsed, like every other request: a Prep request is a script
#: and a path, a few hundred bytes, while a body this large carries data the server should not
#: spend its event loop on.
RECOGNISED_MAX_BYTES = 64 * 1024
_KEY = b'"dataPath"'


def table_request(body: Sequence[bytes]) -> TableRequest | None:
    """The table request ``body`` makes, if it is small and plainly one; else None.

    None means "let a worker parse it": a body that spells the key with JSON escapes, one that
    only the standard library's lenient parser reads, and one that breaks a rule all get their
    usual answer there.
    """
    if sum(len(chunk) for chunk in body) > RECOGNISED_MAX_BYTES:
        return None
    data = body[0] if len(body) == 1 else b"".join(body)
    if _KEY not in data:
        return None
    try:
        request = parse_request(orjson.loads(data), tables=True)
    except (orjson.JSONDecodeError, TabPyError):
        return None
    return request if isinstance(request, TableRequest) else None


class TableEvaluator(Protocol):
    async def evaluate_table(
        self, request: TableRequest, may_query: QueryCheck | None = None, principal: str = ""
    ) -> bytes:
        """Run ``request`` on its stored table; the answer's exact bytes.

        ``may_query`` is what the script may ``tabpy.query`` (``Job.may_query``) and
        ``principal`` who asked (``Job.principal``: the pool keeps callers apart). Raises
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
