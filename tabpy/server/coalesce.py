"""One socket write per small response instead of two.

uvicorn writes a response's status line and headers as soon as the application sends
``http.response.start``, and the body separately on ``http.response.body``. On a kept-alive
connection each ``write`` is a ``send`` system call and a TCP segment of its own, and the first
one wakes the client before the response is whole. For a small reply (every ``/evaluate`` of a
few values) the second system call and segment cost about as much as the rest of the server's
work on the request.

:class:`HeadCoalescer` stands between one request's response cycle and the connection's
transport: it holds the head until the next write (normally the body, sent in the same step of
the event loop) and hands both to the transport at once (``writelines`` is a single ``writev``).
A head not followed by a body in the same step (``HEAD``, a streamed response that awaits its
first chunk) is written on the loop's next iteration, so nothing waits longer than one step.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

__all__ = ["HeadCoalescer"]


class _Cycle(Protocol):
    """What the coalescer reads of uvicorn's ``RequestResponseCycle``."""

    response_started: bool


class HeadCoalescer:
    """A transport for one response cycle; every other attribute is the connection's own."""

    __slots__ = ("_cycle", "_held", "_head_seen", "_loop", "_transport")

    def __init__(
        self, transport: asyncio.Transport, cycle: _Cycle, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._transport = transport
        self._cycle = cycle
        self._loop = loop
        self._held: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif not self._head_seen and self._cycle.response_started:
            # The cycle marks the response started just before writing its head; a write before
            # that (``100 Continue``) goes out at once.
            self._head_seen = True
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write a held head now (a no-op if the body took it along)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
