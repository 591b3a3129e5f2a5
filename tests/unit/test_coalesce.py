"""The response head waits for the body so that both leave in one write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from tabpy.server.coalesce import HeadCoalescer


def _in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test body in a fresh event loop (the coalescer schedules on the loop)."""

    def run() -> None:
        asyncio.run(test())

    return run


@dataclass
class _Transport:
    calls: list[tuple[str, tuple[bytes, ...]]] = field(default_factory=list)
    closed: bool = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", (data,)))

    def writelines(self, parts: Any) -> None:
        self.calls.append(("writelines", tuple(parts)))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


@dataclass
class _Cycle:
    response_started: bool = False


def _coalescer() -> tuple[HeadCoalescer, _Transport, _Cycle]:
    transport, cycle = _Transport(), _Cycle()
    loop = asyncio.get_running_loop()
    return HeadCoalescer(cast(asyncio.Transport, transport), cycle, loop), transport, cycle


@_in_loop
async def test_head_and_body_leave_in_one_call() -> None:
    coalescer, transport, cycle = _coalescer()
    cycle.response_started = True
    coalescer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.calls == []
    coalescer.write(b"{}")
    assert transport.calls == [("writelines", (b"HTTP/1.1 200 OK\r\n\r\n", b"{}"))]
    await asyncio.sleep(0)  # the scheduled flush finds nothing left to write
    coalescer.write(b"more")
    assert transport.calls[1:] == [("write", (b"more",))]


@_in_loop
async def test_a_head_without_a_body_goes_out_on_the_next_loop_step() -> None:
    coalescer, transport, cycle = _coalescer()
    cycle.response_started = True
    coalescer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await asyncio.sleep(0)
    assert transport.calls == [("write", (b"HTTP/1.1 200 OK\r\n\r\n",))]


@_in_loop
async def test_continue_before_the_response_is_not_held() -> None:
    coalescer, transport, cycle = _coalescer()
    coalescer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.calls == [("write", (b"HTTP/1.1 100 Continue\r\n\r\n",))]


@_in_loop
async def test_close_writes_a_held_head_first() -> None:
    coalescer, transport, cycle = _coalescer()
    cycle.response_started = True
    coalescer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    coalescer.close()
    assert transport.calls == [("write", (b"HTTP/1.1 204 No Content\r\n\r\n",))]
    assert transport.closed


@_in_loop
async def test_other_attributes_are_the_transports() -> None:
    coalescer, transport, _ = _coalescer()
    assert coalescer.get_extra_info("peername") == "info:peername"
    assert coalescer.is_closing() is False
