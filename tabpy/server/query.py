"""``/query/<name>``: run a deployed endpoint in a worker."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tabpy.registry.registry_errors import UnknownURI
from tabpy.runtime.pool import Job
from tabpy.runtime.protocol import JobKind
from tabpy.server.body import check_declared_size, read_body
from tabpy.server.context import ServerContext
from tabpy.server.metrics import counting_failures
from tabpy.server.observe import ENDPOINT_KEY
from tabpy.server.responses import JSON, JSON_UTF8, RawResponse


class Query:
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def handle(self, request: Request) -> Response:
        settings = self.context.settings
        name = request.path_params["name"]
        check_declared_size(request, settings.max_request_size_bytes)
        catalog = self.context.catalog
        endpoint = catalog.endpoints.get(name)
        if endpoint is None:
            raise UnknownURI(name)
        request.scope[ENDPOINT_KEY] = name  # per-endpoint latency, for real names only
        chunks = await read_body(request, settings.max_request_size_bytes, settings.gzip_enabled)
        meta = orjson.dumps({"name": name, "version": endpoint.version})
        with counting_failures(self.context.metrics, "query"):
            reply = await self.context.pool.submit(
                Job(JobKind.QUERY, chunks, meta, catalog.revision),
                settings.evaluate_timeout,
                settings.evaluate_timeout_text,
            )
        if reply.status >= 500:
            self.context.metrics.script_failed("query", "exception")
        media_type = JSON_UTF8 if reply.status == 200 else JSON
        return RawResponse(reply.body, reply.status, media_type)
