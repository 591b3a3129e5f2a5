"""How a job waits: for a free worker, then for its reply, under one deadline.

A job's timeout counts from its arrival, queueing included. The pool used to wait for a worker
with an ``asyncio.Queue`` under ``asyncio.timeout_at`` (each wait a timeout context, a timer
and a cancellation scope), then for the reply under a second timer. With every worker busy,
which is when throughput matters, each request paid for both. Here a job has one loop timer,
:class:`Deadline`, which fails whatever future the job is awaiting at the time, and free
workers are handed to waiting jobs by :class:`IdleWorkers` through plain futures.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Generic, TypeVar

__all__ = ["Deadline", "IdleWorkers"]

T = TypeVar("T")


class Deadline:
    """One job's deadline on the loop's clock: a single timer for all the job's waits.

    Set :attr:`awaiting` to the future the job is about to await; when the deadline passes,
    that future fails with ``TimeoutError`` (if it is still pending) and :attr:`passed` turns
    true, so a job that got what it awaited in the same instant still knows it is late.
    """

    __slots__ = ("_timer", "awaiting", "passed")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self.awaiting: asyncio.Future[Any] | None = None
        self.passed = False
        self._timer = loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self.passed = True
        future = self.awaiting
        if future is not None and not future.done():
            future.set_exception(TimeoutError())

    def cancel(self) -> None:
        """The job is over: stop the timer."""
        self._timer.cancel()


class IdleWorkers(Generic[T]):
    """Free workers, and the jobs waiting for one; first come, first served on both sides.

    A waiter whose future is already done (its deadline failed it, or its task was cancelled)
    is skipped, so a worker always goes to a job that still wants it.
    """

    __slots__ = ("_waiters", "_workers")

    def __init__(self) -> None:
        self._workers: collections.deque[T] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[T]] = collections.deque()

    def empty(self) -> bool:
        return not self._workers

    def get_nowait(self) -> T:
        """The longest-idle worker (``IndexError`` when there is none)."""
        return self._workers.popleft()

    def put_nowait(self, worker: T) -> None:
        """Hand ``worker`` to the first job still waiting, or keep it idle."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._workers.append(worker)

    def wait(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[T]:
        """A future that :meth:`put_nowait` completes with a worker, in arrival order."""
        waiter: asyncio.Future[T] = loop.create_future()
        self._waiters.append(waiter)
        return waiter
