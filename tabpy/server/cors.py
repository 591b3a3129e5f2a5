"""CORS headers, configured in ``state.ini`` as TabPy does, declared per route.

TabPy sends its CORS headers on the routes that list :data:`CORS_ROUTES`-style behaviour, on
every reply of those routes except the refusals that come before the route's own work
(authentication, size, evaluation switched off: see ``http_errors.GATE_ERRORS``). A route
opts in by carrying :class:`CORSPolicy` as route middleware, so no handler adds them by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tabpy.registry.service_info import ServiceInfo

#: Scope key set by the error handler for a refusal that must go without CORS headers.
CORS_EXEMPT = "tabpy.cors_exempt"


def cors_headers(info: ServiceInfo) -> dict[str, str]:
    """Only the non-empty values are sent, verbatim."""
    values = {
        "Access-Control-Allow-Origin": info.cors_allow_origin,
        "Access-Control-Allow-Headers": info.cors_allow_headers,
        "Access-Control-Allow-Methods": info.cors_allow_methods,
    }
    return {name: value for name, value in values.items() if value}


class EncodedCORS:
    """The CORS headers in force, as an ASGI response carries them; encoded once per change.

    The values may change while the server runs (the fleet shares them through the registry),
    so they are read on every use, and encoded again only when they are a new mapping.
    """

    def __init__(self, headers: Callable[[], Mapping[str, str]]) -> None:
        self.headers = headers
        self._encoded: tuple[Mapping[str, str], list[tuple[bytes, bytes]]] | None = None

    def raw(self) -> list[tuple[bytes, bytes]]:
        current = self.headers()
        if self._encoded is None or self._encoded[0] is not current:
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in current.items()]
            self._encoded = (current, raw)
        return self._encoded[1]


class CORSPolicy:
    """Route middleware adding the configured CORS headers to the route's replies.

    ``headers`` gives the values in force: the fleet shares them through the registry, and
    they may change while the server runs (:mod:`tabpy.registry.fleet_settings`).
    """

    def __init__(self, app: ASGIApp, headers: Callable[[], Mapping[str, str]]) -> None:
        self.app = app
        self.encoded = EncodedCORS(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = self.encoded.raw()
        if not raw:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and not scope.get(CORS_EXEMPT):
                message["headers"] = [*message.get("headers", ()), *raw]
            await send(message)

        await self.app(scope, receive, send_with_cors)
