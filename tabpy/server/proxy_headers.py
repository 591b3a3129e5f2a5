"""The client's real address behind a reverse proxy, for everything that logs or limits by it.

The outermost middleware: when the TCP peer is one of ``TABPY_TRUSTED_PROXIES``, the request's
``client`` (and its scheme, from ``X-Forwarded-Proto``) become what the proxies report, by the
rule in :mod:`tabpy.security.client_address`. The access log, the call-context line and the
failed-login throttle all read ``scope["client"]`` afterwards, so they agree. From any other
peer the forwarded headers are ignored: a client cannot pick the address it is throttled by.

uvicorn's own proxy-header handling, which trusts 127.0.0.1 by default, is switched off where
the server is started (:mod:`tabpy.server.runner`), so this is the only rule.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tabpy.security.client_address import TrustedProxies

__all__ = ["ProxyHeaders"]


class ProxyHeaders:
    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if not self.trusted or scope["type"] != "http" or not client:  # no proxies: the usual case
            await self.app(scope, receive, send)
            return
        await self.app(self.resolve(scope), receive, send)

    def resolve(self, scope: Scope) -> Scope:
        """``scope`` as seen from behind the trusted proxies (itself if there are none)."""
        client = scope.get("client")
        if not self.trusted or not client:
            return scope
        peer = client[0]
        if not self.trusted.trusts(peer):
            return scope
        forwarded_for: list[str] = []
        forwarded: list[str] = []
        proto = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
            elif name == b"forwarded":
                forwarded.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").strip().lower()
        address = self.trusted.client(peer, forwarded_for, forwarded)
        scope = {**scope, "client": (address, client[1] if address == peer else 0)}
        if proto in ("http", "https"):
            scope["scheme"] = proto
        return scope
