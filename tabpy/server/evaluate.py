"""``POST /evaluate``: authentication and size checks here, everything else in a worker.

The body goes to a worker unparsed. A table request (``"dataPath"``) runs on the table
evaluator instead, when one is configured: the server recognises a small one itself, the worker
any other (``tabpy.runtime.tables``).

:meth:`Evaluate.answer` is the route's work without a request object, shared by the Starlette
route and the lean path of :mod:`tabpy.server.fast_path`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import ExecutionFailed, ScriptsDisabled
from tabpy.runtime.protocol import EvaluateMeta, Job
from tabpy.runtime.tables import table_request
from tabpy.security.principal import Principal
from tabpy.server.actors import key_of, principal_of, query_check
from tabpy.server.body import check_declared, collect
from tabpy.server.context import ServerContext
from tabpy.server.metrics import counting_failures
from tabpy.server.responses import JSON, RawResponse

#: The reply's media type, for every answer of this route.
MEDIA_TYPE = JSON


class Evaluate:
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def handle(self, request: Request) -> Response:
        headers = request.headers
        body = await self.answer(
            request.stream(),
            headers.get("content-length"),
            headers.get("content-encoding"),
            principal_of(request),
        )
        return RawResponse(body, 200, MEDIA_TYPE)

    async def answer(
        self,
        stream: AsyncIterator[bytes],
        declared: str | None,
        encoding: str | None,
        principal: Principal,
    ) -> bytes | bytearray:
        """The reply body for a request whose body is ``stream``; errors are raised."""
        settings = self.context.settings
        if not settings.evaluate_enabled:
            check_declared(declared, settings.max_request_size_bytes)
            raise ScriptsDisabled()
        chunks = await collect(
            stream, declared, encoding, settings.max_request_size_bytes, settings.gzip_enabled
        )
        # The script's tabpy.query(...) has its caller's rights.
        may_query = query_check(principal, self.context.auth.authorization, settings)
        caller = key_of(principal)
        with counting_failures(self.context.metrics, "evaluate"):
            tables = self.context.tables
            # A small body that plainly names a stored table skips the worker's parsing trip.
            if tables is not None and (request := table_request(chunks)) is not None:
                return await tables.evaluate_table(request, may_query, caller)
            job = Job(EvaluateMeta(), chunks, principal=caller, may_query=may_query)
            reply = await self.context.pool.submit(job)
            if reply.table is not None:
                if tables is None:  # workers only ask when the pool has tables on
                    raise ExecutionFailed("this server has no table evaluator for dataPath")
                return await tables.evaluate_table(reply.table, may_query, caller)
        return reply.body
