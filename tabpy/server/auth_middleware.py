"""Authentication for every API route, applied before the route runs: the HTTP adapter of
:class:`tabpy.security.authenticator.Authenticator`.

Protection is by default: any ``Route`` in the application (including ones added later) is
authenticated, with no call to remember in its handler. Not authenticated, as in TabPy:

* static files (a ``Mount`` of an app without routes) and unknown paths (404);
* a known path with a method it does not implement (405 comes first);
* ``OPTIONS``, except on ``/query/<name>``;
* ``/health`` and ``/ready`` (routes named in :data:`PROBES`), only when
  ``TABPY_HEALTH_CHECKS_PUBLIC`` is on; by default they need credentials like every route.

What this adapter adds to the transport-neutral check: the ``Authorization`` header, the
client's address (``scope["client"]``, already resolved through trusted proxies by
:class:`~tabpy.server.proxy_headers.ProxyHeaders`), and the OAuth endpoint scope of the route,
derived from its path and method (:func:`tabpy.security.oauth.endpoint_scope`) so that new
routes get the right scope too. The result is recorded as ``request.state.principal``.

With ``TABPY_AUTHZ`` on, the principal must then hold the role the route needs
(:func:`tabpy.security.roles.route_role`, derived from the path like the scope), and a
``/query/<name>`` caller must be among that endpoint's callers; both are in-memory lookups.
A refused attempt at a change (deploy, update, delete, rollback, grant, revoke) is written to
the audit trail. Whether the caller owns the endpoint it changes is decided later, in the
registry's transaction (:mod:`tabpy.server.endpoints`).

Refused requests are counted in the ``tabpy_auth_failures_total`` metric, and the route that
refused them is recorded in the scope as Starlette's router would, so that request metrics
label them by route.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tabpy.errors import PermissionDenied, TabPyError
from tabpy.registry.audit import Action
from tabpy.security.oauth import endpoint_scope
from tabpy.security.principal import ANONYMOUS, Principal
from tabpy.security.roles import route_role
from tabpy.server.actors import PRINCIPAL_KEY, actor_of
from tabpy.server.call_log import log_call
from tabpy.server.context import ServerContext
from tabpy.server.http_errors import error_response, status_of
from tabpy.server.responses import RawResponse

__all__ = ["PROBES", "AuthMiddleware", "api_route"]

#: Names of the routes ``TABPY_HEALTH_CHECKS_PUBLIC`` opens.
PROBES = frozenset({"health", "ready"})
#: Changes whose refusal here is audited: (method, route template) -> action.
AUDITED: Mapping[tuple[str, str], Action] = {
    ("POST", "/endpoints"): "deploy",
    ("PUT", "/endpoints/{name}"): "update",
    ("DELETE", "/endpoints"): "delete",
    ("DELETE", "/endpoints/{name}"): "delete",
    ("POST", "/endpoints/{name}/rollback"): "rollback",
    ("POST", "/admin/principals"): "grant",
    ("DELETE", "/admin/principals"): "revoke",
}

logger = logging.getLogger(__name__)


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
        refusal = await self.admit(scope, receive, route, Headers(scope=scope).get("authorization"))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def admit(
        self, scope: Scope, receive: Receive, route: Route, authorization: str | None
    ) -> RawResponse | None:
        """Check the request to ``route``: None when it may go on (its principal is then in
        the scope), else the refusal to send. ``authorization`` is its header, if any.

        Also called by the lean path of :mod:`tabpy.server.fast_path`, which finds the route
        and the header itself.
        """
        principal: Principal
        relative = self._relative(scope["path"])
        if scope["method"] == "OPTIONS" and not relative.startswith("/query/"):
            principal = ANONYMOUS  # CORS preflight: never checked, as in TabPy
        else:
            client = scope.get("client")
            try:
                principal = await self.context.auth.authenticate(
                    authorization,
                    client[0] if client else "-",
                    endpoint_scope(relative, scope["method"], self.context.settings),
                )
            except TabPyError as error:
                log_call(Request(scope, receive), None, self.context.settings)
                self.context.metrics.auth_failed(status_of(error))
                scope["route"] = route
                return error_response(error, self.realm)
        if self.context.settings.log_details:
            log_call(Request(scope, receive), principal, self.context.settings)
        refusal = self._refusal(principal, relative, scope["method"])
        if refusal is not None:
            self.context.metrics.auth_failed(403)
            scope["route"] = route
            await self._audit(scope, principal, route, relative, refusal)
            return error_response(refusal, self.realm)
        scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
        return None

    def _refusal(self, principal: Principal, relative: str, method: str) -> PermissionDenied | None:
        """Why ``TABPY_AUTHZ`` refuses this route to ``principal``, or None."""
        if method == "OPTIONS":  # preflights need no role, whatever the path
            return None
        authorization = self.context.auth.authorization
        if not authorization.enabled:
            return None
        role = route_role(relative, method)
        refusal = authorization.role_refusal(principal, role) if role is not None else None
        if refusal is None and relative.startswith("/query/"):
            refusal = authorization.query_refusal(principal, relative[len("/query/") :])
        return refusal

    async def _audit(
        self,
        scope: Scope,
        principal: Principal,
        route: Route,
        relative: str,
        refusal: PermissionDenied,
    ) -> None:
        action = AUDITED.get((scope["method"], route.path))
        if action is None:
            return
        # The route's own template has no Subdirectory prefix: match it against the path without.
        matched = route.matches({**scope, "path": relative, "root_path": ""})[1]
        name = matched.get("path_params", {}).get("name")
        actor = actor_of(scope, principal)
        registry = self.context.catalog.registry
        try:
            await asyncio.to_thread(
                registry.record, actor, action, "refused", endpoint=name, detail=refusal.message
            )
        except Exception as exc:  # noqa: BLE001 - the refusal stands; the log keeps the trace
            logger.error("Could not audit a refused %s by %s: %s", action, actor.principal, exc)

    def _relative(self, path: str) -> str:
        """``path`` without the Subdirectory prefix (TabPy's routes are defined without it)."""
        if self.prefix and path.startswith(self.prefix + "/"):
            return path[len(self.prefix) :]
        return path


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
