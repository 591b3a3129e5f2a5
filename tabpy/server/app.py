"""Assembling the ASGI application.

Starlette gives us routing, request parsing and responses with very little
per-request overhead; everything slow (user code, JSON of data columns) happens
in worker processes, so the event loop only moves bytes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from tabpy.server.artifacts import Artifacts
from tabpy.server.auth_middleware import AuthMiddleware
from tabpy.server.context import ServerContext
from tabpy.server.endpoints import Endpoints
from tabpy.server.evaluate import Evaluate
from tabpy.server.health import Health
from tabpy.server.index import (
    ASSETS_DIRECTORY,
    ASSETS_PATH,
    DOCS_DIRECTORY,
    DOCUMENTATION_FILES,
    Index,
)
from tabpy.server.info import Info
from tabpy.server.metrics import MetricsPage
from tabpy.server.observe import Observe
from tabpy.server.query import Query
from tabpy.server.responses import JSON_UTF8, RawResponse, html_status_page
from tabpy.server.status import Status

logger = logging.getLogger(__name__)

_PHRASES = {403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}


def create_app(context: ServerContext) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        context.pool.start()
        await context.catalog.start()
        try:
            yield
        finally:
            await context.catalog.close()
            await context.pool.close()
            context.auth.close()

    routes = api_routes(context)
    prefix = context.service_info.subdirectory.strip("/")
    if prefix:
        routes = [Mount(f"/{prefix}", routes=routes)]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _framework_error},
    )
    # Added first so that it runs inside Observe: refused requests are logged and counted too.
    app.add_middleware(AuthMiddleware, context=context, routes=routes)
    app.add_middleware(Observe, metrics=context.metrics)
    return app


def api_routes(context: ServerContext) -> list[BaseRoute]:
    options = _Options(context).handle
    endpoints = Endpoints(context)
    status = Status(context)
    query = Query(context)
    health = Health(context)
    routes: list[BaseRoute] = [
        Route("/query/{name}", query.handle, methods=["POST", "GET"]),
        Route("/query/{name}", query.options, methods=["OPTIONS"]),
        Route("/status", status.status, methods=["GET"]),
        Route("/info", Info(context).handle, methods=["GET"]),
        Route("/endpoints", endpoints.list, methods=["GET"]),
        Route("/endpoints", endpoints.create, methods=["POST"]),
        Route("/endpoints/", endpoints.list, methods=["GET"]),
        Route("/endpoints/{name}", endpoints.get, methods=["GET"]),
        Route("/endpoints/{name}", endpoints.update, methods=["PUT"]),
        Route("/endpoints/{name}", endpoints.delete, methods=["DELETE"]),
        Route("/endpoints/{name}/versions", endpoints.versions, methods=["GET"]),
        Route("/endpoints/{name}/rollback", endpoints.rollback, methods=["POST"]),
        Route("/evaluate", Evaluate(context).handle, methods=["POST"]),
        Route(
            "/configurations/endpoint_upload_destination",
            status.upload_destination,
            methods=["GET"],
        ),
        Route("/artifacts/{sha256}", Artifacts(context).put, methods=["PUT"]),
        Route("/", Index(context).handle, methods=["GET"]),
        Route("/health", health.live, methods=["GET"], name="health"),
        Route("/ready", health.ready, methods=["GET"], name="ready"),
        Route("/metrics", MetricsPage(context.metrics).handle, methods=["GET"]),
    ]
    for path in (
        "/status",
        "/info",
        "/endpoints",
        "/endpoints/{name}",
        "/evaluate",
        "/configurations/endpoint_upload_destination",
    ):
        routes.append(Route(path, options, methods=["OPTIONS"]))
    # The status page's own files: mounts, not routes, so public (see tabpy.server.index).
    if DOCS_DIRECTORY is not None:
        routes.append(Mount(f"{ASSETS_PATH}/docs", _Documentation(directory=DOCS_DIRECTORY)))
    routes.append(Mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIRECTORY)))
    static_path = context.settings.static_path
    if static_path is not None:
        routes.append(Mount("/", StaticFiles(directory=static_path, html=True)))
    return routes


class _Documentation(StaticFiles):
    """The documentation's own files, shown as text in the browser; nothing else there."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in DOCUMENTATION_FILES:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Content-Type"] = "text/plain; charset=utf-8"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


class _Options:
    """``OPTIONS`` on API routes: an empty object plus the CORS headers."""

    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def handle(self, request: Request) -> Response:
        return RawResponse(b"{}", 200, JSON_UTF8, self.context.cors)


async def _framework_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    return html_status_page(status, _PHRASES.get(status, exc.detail))
