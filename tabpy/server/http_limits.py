"""A bounded HTTP/1.1 edge: limits on the request head, its reading time and connections.

uvicorn's httptools protocol reads a request line and headers of any size, for as long as the
client likes, on as many connections as it opens. A single client streaming an endless header
can then stall the event loop (the URL and header values are accumulated piecewise, at a cost
that grows with the square of their size) and hold memory; idle connections that never send a
byte are kept for ever. :class:`BoundedProtocol` keeps uvicorn's request handling and adds:

* the request line and the whole head are counted as bytes arrive, before the parser buffers
  them: past ``max_head_bytes`` the client gets 414 (still in the request line) or 431, at once;
* at most ``max_header_count`` headers (431);
* the head must arrive within ``header_timeout`` seconds of the connection opening or of the
  first byte of the next request on a kept-alive connection (408);
* beyond ``max_connections`` open connections, a new one is answered 503 and closed at once.

Every refusal is TabPy's JSON error envelope with ``Connection: close``, and is reported to
the server's metrics by reason (``uri_too_long``, ``head_too_large``, ``too_many_headers``,
``header_timeout``, ``connection_limit``, ``malformed``). The idle time allowed between requests
on a kept-alive connection is uvicorn's own ``timeout_keep_alive`` (``TABPY_KEEPALIVE_TIMEOUT``),
kept with one timer per connection rather than one per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tabpy.config import HttpLimits
from tabpy.server.coalesce import HeadCoalescer
from tabpy.server.http_errors import envelope
from tabpy.server.whole_response import WHOLE_RESPONSE, WholeResponse

__all__ = ["BoundedProtocol", "bounded_protocol"]

_END_OF_HEAD = b"\r\n\r\n"
_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing and refuse the request."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`HttpLimits`.

    Configured per server by :func:`bounded_protocol`, which binds the limits and the metric.
    """

    limits: ClassVar[HttpLimits] = HttpLimits()
    on_refused: ClassVar[Callable[[str], None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._line_done = False
        self._head_bytes = 0
        self._tail = b""
        self._header_count = 0
        self._header_timer: asyncio.TimerHandle | None = None
        #: When the connection last went idle (its response complete); None while busy.
        self._idle_since: float | None = None

    # --- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                503,
                "connection_limit",
                "The server has too many open connections; try again shortly.",
            )
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            # The first bytes of a request on a kept-alive connection. A head that arrives whole
            # in them (the usual case) needs no timer: it is complete before any could fire.
            if self._header_timer is None and _END_OF_HEAD not in data:
                self._arm_header_timer()
            refusal = self._measure_head(data)
            if refusal is not None:
                self._refuse(refusal.status, refusal.reason, str(refusal))
                return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except _Refused as refusal:
            self._refuse(refusal.status, refusal.reason, str(refusal))
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
        except httptools.HttpParserError as error:
            cause = error.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.status, cause.reason, str(cause))
            else:
                self._refuse(400, "malformed", "The request is not valid HTTP/1.1.")

    # --- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_header_count:
            raise _Refused(
                431,
                "too_many_headers",
                f"The request has more than {self.limits.max_header_count} headers.",
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_header_timer()
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not previous:
            # Head and body of the response in one write (tabpy.server.coalesce), and a
            # response known whole in one step (tabpy.server.whole_response).
            cycle.transport = HeadCoalescer(self.transport, cycle, self.loop)  # type: ignore[assignment]
            self.scope[WHOLE_RESPONSE] = WholeResponse(cycle, self.transport)  # type: ignore[literal-required]

    def on_message_complete(self) -> None:
        # The request has been read to its end, so what comes next is the next request's head,
        # measured afresh. Not on response completion: a reply sent early (a 401 or 413) leaves
        # the rest of the body still to arrive, and that is not a head.
        self._reading_head, self._line_done, self._head_bytes, self._tail = True, False, 0, b""
        super().on_message_complete()

    # --- keep-alive --------------------------------------------------------------------------
    # uvicorn arms a timer when each response completes and cancels it when the next request's
    # first bytes arrive: two timer operations per request. Here a connection has one timer,
    # armed when it first goes idle; when it fires, it closes a connection idle for
    # ``timeout_keep_alive`` and otherwise waits again for what remains of that time.

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls this as a request's first bytes arrive: the connection is busy.
        self._idle_since = None

    def on_response_complete(self) -> None:
        # uvicorn's, but marking the connection idle instead of arming a timer each time.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._check_keep_alive
            )

    def _check_keep_alive(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None:
            return  # busy: armed again when it next goes idle
        remaining = idle_since + self.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self.timeout_keep_alive_task = self.loop.call_later(remaining, self._check_keep_alive)
        else:
            self.timeout_keep_alive_handler()

    # --- limits ------------------------------------------------------------------------------

    def _measure_head(self, data: bytes) -> _Refused | None:
        """Count ``data`` against the head limit; a refusal if it is crossed."""
        limit = self.limits.max_head_bytes
        window = self._tail + data
        if not self._line_done and b"\n" in window:
            self._line_done = window.index(b"\n") - len(self._tail) + self._head_bytes < limit
            if not self._line_done:
                return self._too_long(in_line=True)
        room = limit - self._head_bytes
        if len(data) > room:
            # Over the limit unless the head ends within it (the rest is the body).
            end = window.find(_END_OF_HEAD, 0, len(self._tail) + room + len(_END_OF_HEAD))
            if end < 0:
                return self._too_long(in_line=not self._line_done)
        self._head_bytes += len(data)
        self._tail = window[-(len(_END_OF_HEAD) - 1) :]
        return None

    def _too_long(self, in_line: bool) -> _Refused:
        kib = self.limits.max_head_bytes // 1024
        if in_line:
            return _Refused(414, "uri_too_long", f"The request line is longer than {kib} KiB.")
        return _Refused(
            431, "head_too_large", f"The request line and headers are larger than {kib} KiB."
        )

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _head_timed_out(self) -> None:
        self._header_timer = None
        if self._reading_head and not self.transport.is_closing():
            self._refuse(
                408,
                "header_timeout",
                f"The request headers did not arrive within {self.limits.header_timeout:g} s.",
            )

    def _refuse(self, status: int, reason: str, message: str) -> None:
        """Answer with an envelope and close, without reading any more of the request."""
        type(self).on_refused(reason)
        self._cancel_header_timer()
        if self.transport.is_closing():
            return
        body = envelope(message)
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
        )
        self.transport.write(head + body)
        self.transport.close()


def bounded_protocol(
    limits: HttpLimits, on_refused: Callable[[str], None]
) -> type[BoundedProtocol]:
    """A protocol class for one server (uvicorn's ``http=`` setting).

    ``on_refused`` is called with the reason of each refusal.
    """
    return type(
        "TabPyHttpProtocol",
        (BoundedProtocol,),
        {"limits": limits, "on_refused": staticmethod(on_refused)},
    )
