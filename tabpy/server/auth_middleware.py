"""Authentication for every API route, applied before the route runs.

Protection is by default: any ``Route`` in the application (including ones added later) is
authenticated, with no call to remember in its handler. Not authenticated, as in TabPy:

* static files (a ``Mount`` of an app without routes) and unknown paths (404);
* a known path with a method it does not implement (405 comes first);
* ``OPTIONS``, except on ``/query/<name>``;
* ``/health`` and ``/ready`` (routes named in :data:`PROBES`), only when
  ``TABPY_HEALTH_CHECKS_PUBLIC`` is on; by default they need credentials like every route.

Refused requests are counted in the ``tabpy_auth_failures_total`` metric, and the route that
refused them is recorded in the scope as Starlette's router would, so that request metrics
label them by route.

The OAuth endpoint scope a route needs is derived from its path and method
(:func:`tabpy.security.oauth.endpoint_scope`), so new routes get the right scope too.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tabpy.errors import TabPyError
from tabpy.server.call_log import log_call
from tabpy.server.context import ServerContext
from tabpy.server.http_errors import error_response, status_of
from tabpy.server.principal import ANONYMOUS, STATE_KEY, Principal

__all__ = ["PROBES", "AuthMiddleware", "api_route", "is_api_request"]

#: Names of the routes ``TABPY_HEALTH_CHECKS_PUBLIC`` opens.
PROBES = frozenset({"health", "ready"})


class AuthMiddleware:
    def __init__(self, app: ASGIApp, context: ServerContext, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.context = context
        self.routes = routes
        subdirectory = context.service_info.subdirectory.strip("/")
        self.prefix = f"/{subdirectory}" if subdirectory else ""
        self.realm = context.service_info.name
        self.public = PROBES if context.settings.health_checks_public else frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = api_route(self.routes, scope) if scope["type"] == "http" else None
        if route is None or route.name in self.public:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        principal: Principal | None
        if scope["method"] == "OPTIONS" and not self._is_query(scope["path"]):
            principal = ANONYMOUS  # CORS preflight: never checked, as in TabPy
        else:
            try:
                principal = await self.context.auth.authenticate(request)
            except TabPyError as error:
                log_call(request, None, self.context.settings)
                self.context.metrics.auth_failed(status_of(error))
                scope["route"] = route
                await error_response(error, self.realm)(scope, receive, send)
                return
        log_call(request, principal, self.context.settings)
        scope.setdefault("state", {})[STATE_KEY] = principal
        await self.app(scope, receive, send)

    def _is_query(self, path: str) -> bool:
        relative = path[len(self.prefix) :] if self.prefix else path
        return relative.startswith("/query/")


def api_route(routes: Sequence[BaseRoute], scope: Scope) -> Route | None:
    """The ``Route`` that fully matches ``scope`` (path and method), looking inside mounts."""
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        if isinstance(route, Route):
            return route
        if isinstance(route, Mount):
            found = api_route(route.routes, {**scope, **child})
            if found is not None:
                return found
    return None


def is_api_request(routes: Sequence[BaseRoute], scope: Scope) -> bool:
    """True if ``scope`` fully matches a ``Route`` (path and method), looking inside mounts."""
    return api_route(routes, scope) is not None
