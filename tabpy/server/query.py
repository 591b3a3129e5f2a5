"""``/query/<name>``: run a deployed endpoint in a worker."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tabpy.registry.registry_errors import UnknownURI
from tabpy.runtime.protocol import Job, QueryMeta
from tabpy.server.actors import caller_key
from tabpy.server.body import check_declared_size, read_body
from tabpy.server.context import ServerContext
from tabpy.server.metrics import counting_failures
from tabpy.server.observe import ENDPOINT_KEY
from tabpy.server.responses import JSON_UTF8, RawResponse


class Query:
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def handle(self, request: Request) -> Response:
        settings = self.context.settings
        name = request.path_params["name"]
        check_declared_size(request, settings.max_request_size_bytes)
        deployed = self.context.catalog.deployed(name)
        if deployed is None:
            raise UnknownURI(name)
        request.scope[ENDPOINT_KEY] = name  # per-endpoint latency, for real names only
        chunks = await read_body(request, settings.max_request_size_bytes, settings.gzip_enabled)
        job = Job(QueryMeta(deployed.endpoint), chunks, deployed.artifact, caller_key(request))
        with counting_failures(self.context.metrics, "query"):
            reply = await self.context.pools.submit(job, deployed.interpreter)
        return RawResponse(reply.body, 200, JSON_UTF8)
