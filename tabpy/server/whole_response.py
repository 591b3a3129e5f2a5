"""A response known whole, written in one step instead of through two ``send`` calls.

uvicorn's ``send`` is a coroutine. For each response it checks every header name and value
with a regular expression, writes the head, and then writes the body on a second call (the
:mod:`~tabpy.server.coalesce` shim joins the two writes a loop step later). On the lean path
(:mod:`tabpy.server.fast_path`) the status, headers and body are all known before the first
byte leaves, and that ceremony was a measurable share of a trivial ``/evaluate``.

:class:`WholeResponse` is put in each request's scope by the bounded protocol
(:mod:`tabpy.server.http_limits`) under :data:`WHOLE_RESPONSE`. Called with the whole response,
it writes the bytes uvicorn's ``send`` would write (default headers first, names lower-cased)
with one ``writev``, logs the access line uvicorn would log (when uvicorn's access logger has a
handler), and leaves the response cycle in the state ``send`` leaves it in. It covers the
common case only: a kept-alive connection and a response with a matching ``Content-Length``.
Anything else (a connection to be closed, which uvicorn's versions answer differently, a
response with ``Connection`` or ``Transfer-Encoding`` headers, a ``HEAD`` request, a client
that is not reading) makes it decline before writing anything, and the caller uses ``send``
as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

__all__ = ["WHOLE_RESPONSE", "WholeResponse"]

#: The scope key under which the protocol offers a :class:`WholeResponse`.
WHOLE_RESPONSE = "tabpy.whole_response"

#: Headers whose meaning uvicorn's ``send`` interprets; a response carrying one goes through it.
_INTERPRETED = (b"connection", b"transfer-encoding")
#: A request asking to close its connection (uvicorn versions answer it differently).
_CLOSE = (b"connection", b"close")


class WholeResponse:
    """Writes one request's whole response; see the module docstring."""

    __slots__ = ("_cycle", "_transport")

    def __init__(self, cycle: Any, transport: asyncio.Transport) -> None:
        # ``cycle`` is uvicorn's RequestResponseCycle, which has no public type.
        self._cycle = cycle
        self._transport = transport

    def __call__(self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> bool:
        """Write the response; False (nothing written) when it must go through ``send``.

        Raises ``RuntimeError`` for a header uvicorn would refuse, as ``send`` does.
        """
        cycle = self._cycle
        scope = cycle.scope
        if (
            cycle.response_started
            or cycle.disconnected
            or cycle.flow.write_paused
            or not cycle.keep_alive
            or _CLOSE in scope["headers"]
            or scope["method"] == "HEAD"
        ):
            return False
        content: list[bytes] = [STATUS_LINE[status]]
        length: bytes | None = None
        for name, value in (*cycle.default_headers, *headers):
            name = name.lower()
            if name == b"content-length":
                if length is None:
                    length = value
            elif name in _INTERPRETED:
                return False
            content += (name, b": ", value, b"\r\n")
        if length is None or not length.isdigit() or int(length) != len(body):
            return False
        if HEADER_RE.search(b"".join(content[1::4])):
            cycle.response_started = True
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join(content[3::4])):
            cycle.response_started = True
            raise RuntimeError("Invalid HTTP header value.")
        if cycle.access_log:
            cycle.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(scope),
                scope["method"],
                get_path_with_query_string(scope),
                scope["http_version"],
                status,
            )
        content.append(b"\r\n")
        cycle.response_started = cycle.response_complete = True
        cycle.chunked_encoding = False
        cycle.expected_content_length = 0
        self._transport.writelines((b"".join(content), body))
        cycle.message_event.set()
        cycle.on_response()
        return True
