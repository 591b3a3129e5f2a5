"""``POST /evaluate``: authentication and size checks here, everything else in a worker.

The body goes to a worker unparsed. If the worker finds a table request (``"dataPath"``) and a
table evaluator is configured, the request runs there instead (``tabpy.runtime.tables``).

:meth:`Evaluate.answer` is the route's work without a request object, shared by the Starlette
route and the lean path of :mod:`tabpy.server.fast_path`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import ExecutionFailed, ScriptsDisabled
from tabpy.runtime.protocol import EvaluateMeta, Job
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
        with counting_failures(self.context.metrics, "evaluate"):
            job = Job(EvaluateMeta(), chunks, principal=key_of(principal), may_query=may_query)
            reply = await self.context.pool.submit(job)
            if reply.table is not None:
                tables = self.context.tables
                if tables is None:  # workers only ask when the pool has tables on
                    raise ExecutionFailed("this server has no table evaluator for dataPath")
                return await tables.evaluate_table(reply.table, may_query)
        return reply.body
