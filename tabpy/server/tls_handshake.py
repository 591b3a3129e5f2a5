"""One WARNING line when a client fails the TLS handshake in a way an admin can fix.

The usual first-day HTTPS mistakes are a client that speaks plain HTTP to the HTTPS port
(``http://`` in a URL, *Require SSL* unticked in Tableau) and a client that does not trust the
certificate. Both end in the TLS layer below uvicorn, which never sees the connection; the event
loop's TLS protocol treats every ``ssl.SSLError`` as an ``OSError`` and logs it at most at DEBUG,
in debug mode. So nothing was logged at all.

How the failure reaches us: :func:`report_handshake_failures` sets the context's
``sslobject_class`` (a documented hook) to :class:`_ReportingSSLObject`, whose handshake turns
those few ``SSLError`` reasons into :class:`HandshakeRefused`, which is not an ``OSError``.
The loop (uvloop or asyncio alike) then closes the connection and hands the exception to the
loop's exception handler together with the connection's transport, and
:meth:`HandshakeReporter.handle` logs the client's address from it. Any other exception goes
on to the handler that was there before.

Bounded: one line per connection at most, and at most one per client address and kind of
mistake per :data:`REPEAT_AFTER` seconds, because Tableau retries and a scanner may hammer the
port.
Only the address and the kind of failure are logged, never the bytes received, which for a
plain HTTP request include its ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

__all__ = ["REPEAT_AFTER", "HandshakeRefused", "HandshakeReporter", "report_handshake_failures"]

logger = logging.getLogger("tabpy.server")

#: Seconds during which further failures of the same client address are not logged again.
REPEAT_AFTER = 60.0
#: Addresses remembered for the repeat limit; past this the memory starts afresh.
_MAX_REMEMBERED = 1024

_PLAIN_HTTP = (
    "sent plain HTTP to the HTTPS port: use an https:// URL "
    "(in Tableau, tick Require SSL in the analytics extension connection)"
)
_NOT_TLS = (
    "sent something that is not TLS to the HTTPS port, probably plain HTTP: use an https:// "
    "URL (in Tableau, tick Require SSL in the analytics extension connection)"
)
_UNTRUSTED = (
    "does not trust the server's certificate ({reason}): install the certificate, or the "
    "authority that issued it, on that client, or give the client the certificate as its CA"
)

#: OpenSSL's reason codes worth a WARNING, and what to tell the admin about each.
_EXPLANATIONS = {
    "HTTP_REQUEST": _PLAIN_HTTP,  # OpenSSL recognises GET, POST, HEAD and PUT
    "HTTPS_PROXY_REQUEST": _PLAIN_HTTP,  # CONNECT
    "WRONG_VERSION_NUMBER": _NOT_TLS,  # any other plain request (OPTIONS, DELETE, ...)
    "TLSV1_ALERT_UNKNOWN_CA": _UNTRUSTED,
    "SSLV3_ALERT_BAD_CERTIFICATE": _UNTRUSTED,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": _UNTRUSTED,
}


class HandshakeRefused(Exception):
    """A TLS handshake failed for a reason listed in ``_EXPLANATIONS``.

    Deliberately not an ``OSError`` (unlike ``ssl.SSLError``): the event loop reports only
    other exceptions to its exception handler.
    """

    def __init__(self, reason: str, explanation: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.explanation = explanation


class _ReportingSSLObject(ssl.SSLObject):
    """``ssl.SSLObject`` whose handshake raises :class:`HandshakeRefused` for known mistakes."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLError as err:
            explanation = _EXPLANATIONS.get(err.reason or "")
            if explanation is None:
                raise
            text = err.reason.lower().replace("_", " ") if err.reason else ""
            raise HandshakeRefused(err.reason or "", explanation.format(reason=text)) from None


def report_handshake_failures(context: ssl.SSLContext) -> None:
    """Make connections through ``context`` raise :class:`HandshakeRefused` (see the module)."""
    context.sslobject_class = _ReportingSSLObject


ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class HandshakeReporter:
    """The loop's exception handler: logs :class:`HandshakeRefused`, passes on the rest."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_logged: dict[tuple[str, str], float] = {}
        self._previous: ExceptionHandler | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self.handle)

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if not isinstance(error, HandshakeRefused):
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        host, client = _client_address(context.get("transport"))
        if self._should_log((host, error.explanation)):
            logger.warning("TLS handshake failed: client %s %s", client, error.explanation)

    def _should_log(self, key: tuple[str, str]) -> bool:
        now = self._clock()
        last = self._last_logged.get(key)
        if last is not None and now - last < REPEAT_AFTER:
            return False
        if len(self._last_logged) >= _MAX_REMEMBERED:
            self._last_logged.clear()
        self._last_logged[key] = now
        return True


def _client_address(transport: object) -> tuple[str, str]:
    """``(host, "host:port")`` of the connection's peer, as far as the transport knows it."""
    get_extra_info = getattr(transport, "get_extra_info", None)
    peer = get_extra_info("peername") if get_extra_info is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        shown = f"[{host}]" if ":" in host else host
        return host, f"{shown}:{peer[1]}"
    return "", "(unknown address)"
