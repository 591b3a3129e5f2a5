"""``POST /evaluate``: authentication and size checks here, everything else in a worker.

The body goes to a worker unparsed. If the worker finds a table request (``"dataPath"``) and a
table evaluator is configured, the request runs there instead (``tabpy.runtime.tables``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import ExecutionFailed, ScriptsDisabled
from tabpy.runtime.protocol import EvaluateMeta, Job
from tabpy.server.actors import caller_key, principal_of, query_check
from tabpy.server.body import check_declared_size, read_body
from tabpy.server.context import ServerContext
from tabpy.server.metrics import counting_failures
from tabpy.server.responses import JSON, RawResponse


class Evaluate:
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def handle(self, request: Request) -> Response:
        settings = self.context.settings
        if not settings.evaluate_enabled:
            check_declared_size(request, settings.max_request_size_bytes)
            raise ScriptsDisabled()
        chunks = await read_body(request, settings.max_request_size_bytes, settings.gzip_enabled)
        # The script's tabpy.query(...) has its caller's rights.
        may_query = query_check(principal_of(request), self.context.auth.authorization, settings)
        with counting_failures(self.context.metrics, "evaluate"):
            job = Job(EvaluateMeta(), chunks, principal=caller_key(request), may_query=may_query)
            reply = await self.context.pool.submit(job)
            if reply.table is not None:
                tables = self.context.tables
                if tables is None:  # workers only ask when the pool has tables on
                    raise ExecutionFailed("this server has no table evaluator for dataPath")
                answer = await tables.evaluate_table(reply.table, may_query)
                return RawResponse(answer, 200, JSON)
        return RawResponse(reply.body, 200, JSON)
