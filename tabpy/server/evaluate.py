"""``POST /evaluate``: authentication and size checks here, everything else in a worker."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import ScriptsDisabled
from tabpy.runtime.evaluate import Reply
from tabpy.runtime.pool import Job, RawReply
from tabpy.runtime.protocol import JobKind
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
        revision = self.context.catalog.revision
        arrow = self.context.arrow
        with counting_failures(self.context.metrics, "evaluate"):
            reply: Reply | RawReply | None = None
            if arrow is not None:
                reply = await arrow.evaluate(chunks, revision)
            if reply is None:
                job = Job(JobKind.EVALUATE, chunks, revision=revision)
                reply = await self.context.pool.submit(
                    job, settings.evaluate_timeout, settings.evaluate_timeout_text
                )
        if reply.status >= 500:
            self.context.metrics.script_failed("evaluate", "exception")
        return RawResponse(reply.body, reply.status, JSON)
