"""Assembling the ASGI application.

Starlette gives us routing, request parsing and responses with very little
per-request overhead; everything slow (user code, JSON of data columns) happens
in worker processes, so the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from tabpy.errors import TabPyError
from tabpy.security.client_address import TrustedProxies
from tabpy.server import http_errors
from tabpy.server.admin import Admin
from tabpy.server.artifacts import Artifacts
from tabpy.server.auth_middleware import AuthMiddleware
from tabpy.server.context import ServerContext
from tabpy.server.cors import CORSPolicy
from tabpy.server.endpoints import Endpoints
from tabpy.server.evaluate import Evaluate
from tabpy.server.fast_path import FastPath
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
from tabpy.server.openapi import OPENAPI_PATH, OpenAPI
from tabpy.server.proxy_headers import ProxyHeaders
from tabpy.server.query import Query
from tabpy.server.responses import JSON_UTF8, RawResponse, html_status_page
from tabpy.server.status import Status

logger = logging.getLogger(__name__)

_PHRASES = {403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}


def create_app(context: ServerContext) -> FastPath:
    """The application: the hot routes on a lean path, the rest through Starlette."""
    evaluate, query = Evaluate(context), Query(context)
    routes = api_routes(context, evaluate, query)
    return FastPath(_starlette_app(context, routes), context, routes, evaluate, query)


def _starlette_app(context: ServerContext, routes: list[BaseRoute]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        context.pools.start()
        await context.catalog.start()
        registry = context.catalog.registry
        registry.on_audit = context.metrics.audit_recorded
        await asyncio.to_thread(registry.prune_audit)
        await context.auth.authorization.start()
        if context.fleet is not None:
            await context.fleet.start()
        try:
            yield
        finally:
            if context.fleet is not None:
                await context.fleet.close()
            await context.auth.authorization.close()
            await context.catalog.close()
            await context.pools.close()
            context.auth.close()

    prefix = context.service_info.subdirectory.strip("/")
    if prefix:
        routes = [Mount(f"/{prefix}", app=Router(routes, redirect_slashes=False))]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _framework_error,
            TabPyError: http_errors.handler(context.service_info.name),
            ClientDisconnect: http_errors.client_disconnected,
            Exception: http_errors.unexpected_error,
        },
    )
    # A trailing-slash path is simply unknown (404/405), as in TabPy; Starlette's redirect would
    # send the client to an absolute URL built from the request's own Host header.
    app.router.redirect_slashes = False
    # Added first so that it runs inside Observe: refused requests are logged and counted too.
    app.add_middleware(AuthMiddleware, context=context, routes=routes)
    app.add_middleware(Observe, metrics=context.metrics, instance_id=context.settings.instance_id)
    # Outermost: every log line and limit then sees the client behind a trusted proxy.
    app.add_middleware(ProxyHeaders, trusted=TrustedProxies(context.settings.trusted_proxies))
    return app


def api_routes(
    context: ServerContext, evaluate: Evaluate | None = None, query: Query | None = None
) -> list[BaseRoute]:
    options = _Options().handle
    endpoints = Endpoints(context)
    status = Status(context)
    evaluate = evaluate or Evaluate(context)
    query = query or Query(context)
    health = Health(context)
    admin = Admin(context)
    # TabPy's CORS headers go on these routes only (tabpy.server.cors); the values are read
    # per request, since the fleet's shared copy may change.
    cors = [Middleware(CORSPolicy, headers=lambda: context.cors)]

    def route(
        path: str, endpoint: Any, method: str, *, with_cors: bool = False, name: str | None = None
    ) -> Route:
        return Route(
            path, endpoint, methods=[method], name=name, middleware=cors if with_cors else None
        )

    # The hot routes first: the router (and the authentication's route lookup) try routes in
    # order, and no earlier route shares a path with these, so the order changes no answer.
    routes: list[BaseRoute] = [
        route("/evaluate", evaluate.handle, "POST", with_cors=True),
        route("/query/{name}", query.handle, "POST", with_cors=True),
        route("/query/{name}", query.handle, "GET", with_cors=True),
        route("/status", status.status, "GET", with_cors=True),
        route("/info", Info(context).handle, "GET", with_cors=True),
        route("/endpoints", endpoints.list, "GET", with_cors=True),
        route("/endpoints", endpoints.create, "POST"),
        route("/endpoints", endpoints.delete_named, "DELETE"),
        route("/endpoints/", endpoints.list, "GET", with_cors=True),
        route("/endpoints/{name}", endpoints.get, "GET", with_cors=True),
        route("/endpoints/{name}", endpoints.update, "PUT"),
        route("/endpoints/{name}", endpoints.delete, "DELETE"),
        route("/endpoints/{name}/versions", endpoints.versions, "GET"),
        route("/endpoints/{name}/rollback", endpoints.rollback, "POST"),
        route("/endpoints/{name}/access", endpoints.access, "GET"),
        route("/configurations/endpoint_upload_destination", status.upload_destination, "GET"),
        route("/artifacts/{sha256}", Artifacts(context).put, "PUT"),
        route("/", Index(context).handle, "GET"),
        route("/health", health.live, "GET", name="health"),
        route("/ready", health.ready, "GET", name="ready"),
        route("/metrics", MetricsPage(context.metrics).handle, "GET"),
        route(OPENAPI_PATH, OpenAPI(context.settings, context.service_info).handle, "GET"),
        route("/admin/principals", admin.principals, "GET"),
        route("/admin/principals", admin.grant, "POST"),
        route("/admin/principals", admin.revoke, "DELETE"),
        route("/admin/audit", admin.audit, "GET"),
    ]
    for path in (
        "/query/{name}",
        "/status",
        "/info",
        "/endpoints",
        "/endpoints/{name}",
        "/evaluate",
        "/configurations/endpoint_upload_destination",
    ):
        routes.append(route(path, options, "OPTIONS", with_cors=True))
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
    """``OPTIONS`` on API routes: an empty object (the route adds the CORS headers)."""

    async def handle(self, request: Request) -> Response:
        return RawResponse(b"{}", 200, JSON_UTF8)


async def _framework_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    headers = exc.headers
    if status == 405:
        # RFC 9110 requires Allow. Starlette's names only the first route of the path, but one
        # path has a Route per method here, so collect them all.
        headers = {
            "Allow": ", ".join(sorted(_allowed_methods(request.app.router.routes, request.scope)))
        }
    return html_status_page(status, _PHRASES.get(status, exc.detail), headers)


def _allowed_methods(routes: list[BaseRoute], scope: Scope) -> set[str]:
    """The methods of every route whose path matches ``scope``'s, looking inside mounts.

    Each ``Route`` is matched against the scope as the router left it: inside a mount
    (the Subdirectory prefix), its ``root_path`` already holds the prefix.
    """
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Mount):
            methods |= _allowed_methods(route.routes, scope)
        elif isinstance(route, Route) and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return methods
