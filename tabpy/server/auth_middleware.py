"""Authentication for every API route, applied before the route runs.

Protection is by default: any ``Route`` in the application (including ones added later) is
authenticated, with no call to remember in its handler. Not authenticated, as in TabPy:

* static files (a ``Mount`` of an app without routes) and unknown paths (404);
* a known path with a method it does not implement (405 comes first);
* ``OPTIONS``, except on ``/query/<name>``.

The OAuth endpoint scope a route needs is derived from its path and method
(:func:`tabpy.security.oauth.endpoint_scope`), so new routes get the right scope too.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tabpy.errors import HTTPError
from tabpy.server.call_log import log_call
from tabpy.server.context import ServerContext
from tabpy.server.principal import ANONYMOUS, STATE_KEY, Principal
from tabpy.server.responses import error_response

__all__ = ["AuthMiddleware", "is_api_request"]


class AuthMiddleware:
    def __init__(self, app: ASGIApp, context: ServerContext, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.context = context
        self.routes = routes
        subdirectory = context.service_info.subdirectory.strip("/")
        self.prefix = f"/{subdirectory}" if subdirectory else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_request(self.routes, scope):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        principal: Principal | None
        if scope["method"] == "OPTIONS" and not self._is_query(scope["path"]):
            principal = ANONYMOUS  # CORS preflight: never checked, as in TabPy
        else:
            try:
                principal = await self.context.auth.authenticate(request)
            except HTTPError as error:
                log_call(request, None, self.context.settings)
                await error_response(error)(scope, receive, send)
                return
        log_call(request, principal, self.context.settings)
        scope.setdefault("state", {})[STATE_KEY] = principal
        await self.app(scope, receive, send)

    def _is_query(self, path: str) -> bool:
        relative = path[len(self.prefix) :] if self.prefix else path
        return relative.startswith("/query/")


def is_api_request(routes: Sequence[BaseRoute], scope: Scope) -> bool:
    """True if ``scope`` fully matches a ``Route`` (path and method), looking inside mounts."""
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        if isinstance(route, Route):
            return True
        if isinstance(route, Mount) and is_api_request(route.routes, {**scope, **child}):
            return True
    return False
