"""The outermost middleware: request id, timing, the access log and request metrics.

One plain ASGI middleware (no request object, no body buffering) does all four, so a request
costs one clock read at each end, one header scan and a few dictionary lookups.

The request id is the client's ``X-Request-ID`` when it looks sane (1 to 128 letters, digits
and ``._:=+/-``; a proxy such as nginx can pass its own), otherwise 32 random hex digits. It is
set in :data:`tabpy.logs.current_request_id` for every log line written during the request and
sent back in the ``X-Request-ID`` response header. Every response also says which instance of
a fleet answered, in ``X-TabPy-Instance`` (``TABPY_INSTANCE_ID``), a header built once.
"""

from __future__ import annotations

import os
import random
import re
import time

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tabpy.logs import current_request_id
from tabpy.server.access_log import log_access
from tabpy.server.metrics import UNMATCHED, Metrics

__all__ = [
    "ENDPOINT_KEY",
    "INSTANCE_HEADER",
    "REQUEST_ID_HEADER",
    "REQUEST_ID_KEY",
    "SANE_ID",
    "Observe",
]

REQUEST_ID_HEADER = "X-Request-ID"
INSTANCE_HEADER = "X-TabPy-Instance"
#: Scope key a handler sets to the name of the endpoint it ran, for per-endpoint latency.
ENDPOINT_KEY = "tabpy.endpoint"
REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("ascii")
#: A client's request id that is used as is.
SANE_ID = re.compile(rb"[A-Za-z0-9._:=+/-]{1,128}")


class Observe:
    def __init__(self, app: ASGIApp, metrics: Metrics, instance_id: str = "") -> None:
        self.app = app
        self.metrics = metrics
        # Request ids need to be unique, not secret: a generator seeded once saves a system call
        # (getrandom) per request.
        self._ids = random.Random(os.urandom(32))
        self._instance: tuple[tuple[bytes, bytes], ...] = (
            ((INSTANCE_HEADER.lower().encode("ascii"), instance_id.encode("ascii")),)
            if instance_id
            else ()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id: bytes | None = None
        size: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                size = int(value) if value.isdigit() else None
            elif name == REQUEST_ID_KEY and SANE_ID.fullmatch(value):
                request_id = value
        if request_id is None:
            request_id = self.new_id()
        id_header = (REQUEST_ID_KEY, request_id)
        instance = self.instance
        status = 500  # what the client saw if the app failed before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header, *instance]
            await send(message)

        token = current_request_id.set(request_id.decode("ascii"))
        self.metrics.http.in_flight += 1
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.finish(scope, status, started, size)
            current_request_id.reset(token)

    @property
    def instance(self) -> tuple[tuple[bytes, bytes], ...]:
        """The ``X-TabPy-Instance`` response header (none when no instance id is set)."""
        return self._instance

    def new_id(self) -> bytes:
        """A request id for a request that brought no usable one."""
        return b"%032x" % self._ids.getrandbits(128)

    def finish(self, scope: Scope, status: int, started: float, size: int | None) -> None:
        """The end of a request counted in ``in_flight``: the access log line and metrics."""
        seconds = time.perf_counter() - started
        metrics = self.metrics
        metrics.http.in_flight -= 1
        log_access(scope, status, seconds)
        metrics.observe_request(_route_of(scope), scope["method"], status, seconds, size)
        endpoint = scope.get(ENDPOINT_KEY)
        if endpoint is not None:
            metrics.observe_endpoint(endpoint, seconds)


def _route_of(scope: Scope) -> str:
    """The template of the route that handled the request (set by Starlette's router, or by
    ``AuthMiddleware`` for a refused request)."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    if isinstance(route, Mount):
        return f"{route.path}/*"
    return str(getattr(route, "path", UNMATCHED))
