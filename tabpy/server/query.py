"""``/query/<name>``: run a deployed endpoint in a worker.

:meth:`Query.answer` is the route's work without a request object, shared by the Starlette
route and the lean path of :mod:`tabpy.server.fast_path`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from tabpy.registry.registry_errors import UnknownURI
from tabpy.runtime.protocol import Job, QueryMeta
from tabpy.security.principal import Principal
from tabpy.server.actors import key_of, principal_of
from tabpy.server.body import check_declared, collect
from tabpy.server.context import ServerContext
from tabpy.server.metrics import counting_failures
from tabpy.server.observe import ENDPOINT_KEY
from tabpy.server.responses import JSON_UTF8, RawResponse

#: The reply's media type, for every answer of this route.
MEDIA_TYPE = JSON_UTF8


class Query:
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def handle(self, request: Request) -> Response:
        headers = request.headers
        body = await self.answer(
            request.scope,
            request.path_params["name"],
            request.stream(),
            headers.get("content-length"),
            headers.get("content-encoding"),
            principal_of(request),
        )
        return RawResponse(body, 200, MEDIA_TYPE)

    async def answer(
        self,
        scope: Scope,
        name: str,
        stream: AsyncIterator[bytes],
        declared: str | None,
        encoding: str | None,
        principal: Principal,
    ) -> bytes | bytearray:
        """The reply body of endpoint ``name``; errors are raised."""
        settings = self.context.settings
        check_declared(declared, settings.max_request_size_bytes)
        deployed = self.context.catalog.deployed(name)
        if deployed is None:
            raise UnknownURI(name)
        scope[ENDPOINT_KEY] = name  # per-endpoint latency, for real names only
        chunks = await collect(
            stream, declared, encoding, settings.max_request_size_bytes, settings.gzip_enabled
        )
        job = Job(QueryMeta(deployed.endpoint), chunks, deployed.artifact, key_of(principal))
        with counting_failures(self.context.metrics, "query"):
            reply = await self.context.pools.submit(job, deployed.interpreter)
        return reply.body
