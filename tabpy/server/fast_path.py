"""A lean path for the two hot routes: ``POST /evaluate`` and ``GET``/``POST /query/<name>``.

Why: a trivial ``/evaluate`` spent most of the server's CPU in the framework around the
route, not in the route. Each layer of the full stack (Starlette's error middleware, the
proxy-address, observing and authentication middlewares, the exception middleware, the router
with its regular expressions, the route's exception wrapper, the CORS route middleware, the
request object with its header mapping) is one more coroutine call, closure and ``send``
wrapper per request, and together they cost more than the HTTP parsing and the hand-off to a
worker.

What it does, for those routes only, is what the full stack does, in the same order and by
calling the same pieces: :meth:`ProxyHeaders.resolve`, the request id, in-flight count, access
log and metrics of :class:`~tabpy.server.observe.Observe`, :meth:`AuthMiddleware.admit`
(authentication, ``TABPY_AUTHZ`` roles and callers, the call log), the route's own
``answer``, the error mapping of :mod:`tabpy.server.http_errors` (refusals that come before the
route's work go without CORS headers) and the CORS headers. The response messages are the ones
the full stack sends, header for header, so uvicorn writes the same bytes; under the bounded
protocol they are written in one step, with the same bytes (:mod:`tabpy.server.whole_response`).
The headers are read in one pass over the request's header list.

Everything else goes to the full application unchanged: other paths, other methods (a 405,
``OPTIONS`` preflights), the lifespan, and every request when a ``Subdirectory`` prefix is
configured (the prefix then changes the routes' templates, which the full stack handles).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tabpy.errors import TabPyError
from tabpy.logs import current_request_id
from tabpy.security.client_address import TrustedProxies
from tabpy.server import evaluate, query
from tabpy.server.actors import PRINCIPAL_KEY
from tabpy.server.auth_middleware import AuthMiddleware
from tabpy.server.body import receive_chunks
from tabpy.server.context import ServerContext
from tabpy.server.cors import EncodedCORS
from tabpy.server.http_errors import (
    GATE_ERRORS,
    client_disconnected,
    error_response,
    unexpected_error,
)
from tabpy.server.observe import REQUEST_ID_KEY, SANE_ID, Observe
from tabpy.server.proxy_headers import ProxyHeaders
from tabpy.server.responses import RawResponse
from tabpy.server.whole_response import WHOLE_RESPONSE

__all__ = ["FastPath"]

_QUERY = "/query/"
#: Scope key set once the response has begun (an error after that cannot be answered).
_STARTED = "tabpy.response_started"
_QUERY_METHODS = ("POST", "GET")

Headers = list[tuple[bytes, bytes]]


class FastPath:
    """The application: the hot routes served here, everything else by ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        context: ServerContext,
        routes: Sequence[BaseRoute],
        evaluate_route: evaluate.Evaluate,
        query_route: query.Query,
    ) -> None:
        self.app = app
        settings = context.settings
        self.enabled = not context.service_info.subdirectory.strip("/")
        self.proxies = ProxyHeaders(app, TrustedProxies(settings.trusted_proxies))
        self.observe = Observe(app, context.metrics, settings.instance_id)
        self.auth = AuthMiddleware(app, context, routes)
        self.realm = context.service_info.name
        self.evaluate = evaluate_route
        self.query = query_route
        self.cors = EncodedCORS(lambda: context.cors)
        self._evaluate_route = _route(routes, "/evaluate", "POST")
        self._query_routes = {m: _route(routes, "/query/{name}", m) for m in _QUERY_METHODS}

    def __getattr__(self, name: str) -> object:
        # The Starlette application's own attributes (state, router, ...) stay reachable.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        name: str | None = None
        if path == "/evaluate" and method == "POST":
            route = self._evaluate_route
        elif path.startswith(_QUERY) and method in _QUERY_METHODS:
            name = path[len(_QUERY) :]
            if not name or "/" in name:
                await self.app(scope, receive, send)
                return
            route = self._query_routes[method]
        else:
            await self.app(scope, receive, send)
            return
        # Starlette's outermost error middleware: an unforeseen error still gets an envelope
        # (when nothing was sent yet) and goes on to uvicorn, which logs it.
        inner = self.proxies.resolve(scope)
        try:
            await self._observed(inner, receive, send, route, name)
        except Exception as exc:
            if not inner.get(_STARTED):
                response = await unexpected_error(Request(scope), exc)
                await response(scope, receive, send)
            raise

    async def _observed(
        self, scope: Scope, receive: Receive, send: Send, route: Route, name: str | None
    ) -> None:
        """Observe's part: request id, in-flight count, then the access log and metrics."""
        began = time.perf_counter()
        request_id: bytes | None = None
        size: int | None = None
        declared: str | None = None
        encoding: str | None = None
        authorization: str | None = None
        # One pass; the last Content-Length sizes the metric (as Observe), the first of each
        # header is the request's (as Starlette's Headers.get).
        for key, value in scope["headers"]:
            if key == b"content-length":
                size = int(value) if value.isdigit() else None
                if declared is None:
                    declared = value.decode("latin-1")
            elif key == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif key == b"content-encoding":
                if encoding is None:
                    encoding = value.decode("latin-1")
            elif key == REQUEST_ID_KEY and SANE_ID.fullmatch(value):
                request_id = value
        if request_id is None:
            request_id = self.observe.new_id()
        observe = self.observe
        token = current_request_id.set(request_id.decode("ascii"))
        observe.metrics.http.in_flight += 1
        status = 500  # what the client saw if the app failed before answering
        try:
            response, cors = await self._respond(
                scope, receive, route, name, declared, encoding, authorization
            )
            status = response.status_code
            headers: Headers = response.raw_headers
            cors_raw = self.cors.raw() if cors else None
            if cors_raw:
                headers = [*headers, *cors_raw]
            headers = [*headers, (REQUEST_ID_KEY, request_id), *observe.instance]
            scope[_STARTED] = True
            whole = scope.get(WHOLE_RESPONSE)
            if whole is None or not whole(status, headers, response.body):
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": response.body})
        finally:
            observe.finish(scope, status, began, size)
            current_request_id.reset(token)

    async def _respond(
        self,
        scope: Scope,
        receive: Receive,
        route: Route,
        name: str | None,
        declared: str | None,
        encoding: str | None,
        authorization: str | None,
    ) -> tuple[Response, bool]:
        """The response, and whether it gets the CORS headers."""
        refusal = await self.auth.admit(scope, receive, route, authorization)
        if refusal is not None:
            return refusal, False  # refused before the route: no CORS headers
        # What the router records: the route, and its parameters.
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {} if name is None else {"name": name}
        principal = scope["state"][PRINCIPAL_KEY]
        stream = receive_chunks(receive)
        try:
            if name is None:
                body = await self.evaluate.answer(stream, declared, encoding, principal)
                return RawResponse(body, 200, evaluate.MEDIA_TYPE), True
            body = await self.query.answer(scope, name, stream, declared, encoding, principal)
            return RawResponse(body, 200, query.MEDIA_TYPE), True
        except TabPyError as error:
            return error_response(error, self.realm), not isinstance(error, GATE_ERRORS)
        except ClientDisconnect as gone:
            return await client_disconnected(Request(scope, receive), gone), True


def _route(routes: Sequence[BaseRoute], path: str, method: str) -> Route:
    for route in routes:
        if isinstance(route, Route) and route.path == path and method in (route.methods or ()):
            return route
    raise LookupError(f"no {method} {path} route to serve quickly")
