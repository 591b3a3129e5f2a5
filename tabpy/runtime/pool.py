"""Supervision of the worker processes.

Workers are forked from a multiprocessing *fork server* that has already
imported the worker module (and with it pandas), so a replacement is ready in
milliseconds instead of the second a cold interpreter needs.  Each worker owns
one socket pair; a ``Channel`` reads replies straight into a buffer of the
announced size.

The pool guarantees capacity: a worker whose job times out is killed with its
whole process group, a worker that dies or exceeds its memory limit is
discarded, and every discarded worker is replaced at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import cast

from tabpy.errors import MemoryLimitExceeded, ScriptTimeout, WorkerCrashed
from tabpy.runtime.namespace import OPTIONAL_MODULES
from tabpy.runtime.protocol import REPLY_HEADER, JobKind, ReplyFlag, pack_request_header
from tabpy.runtime.worker import worker_main

logger = logging.getLogger(__name__)

PRELOADED_MODULES = ("tabpy.runtime.worker", *OPTIONAL_MODULES)
_SPAWN_RETRY_SECONDS = 1.0
_READY_TIMEOUT_SECONDS = 120.0


class WorkerGone(Exception):
    """The worker's socket closed before a complete reply arrived."""


class RawReply:
    __slots__ = ("status", "flags", "body")

    def __init__(self, status: int, flags: ReplyFlag, body: bytearray) -> None:
        self.status = status
        self.flags = flags
        self.body = body


class Channel(asyncio.BufferedProtocol):
    """The server's end of one worker socket: at most one reply outstanding."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._header = bytearray(REPLY_HEADER.size)
        self._target: bytearray = self._header
        self._filled = 0
        self._status = 0
        self._flags = ReplyFlag.NONE
        self._waiter: asyncio.Future[RawReply] | None = None
        self._lost = False
        #: Called when the socket closes; the pool uses it to notice idle deaths.
        self.on_lost: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def expect_reply(self) -> asyncio.Future[RawReply]:
        waiter = asyncio.get_running_loop().create_future()
        if self._lost:
            waiter.set_exception(WorkerGone())
        self._waiter = waiter
        return waiter

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._target)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._filled < len(self._target):
            return
        if self._target is self._header:
            self._status, flags, length = REPLY_HEADER.unpack(self._header)
            self._flags = ReplyFlag(flags)
            self._target, self._filled = bytearray(length), 0
            if length:
                return
        reply = RawReply(self._status, self._flags, self._target)
        self._target, self._filled = self._header, 0
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(WorkerGone())
        elif self.on_lost is not None:
            self.on_lost()


class Worker:
    def __init__(self, process: BaseProcess, channel: Channel) -> None:
        self.process = process
        self.channel = channel

    @property
    def pid(self) -> int:
        return cast(int, self.process.pid)

    def call(self, job: Job) -> asyncio.Future[RawReply]:
        waiter = self.channel.expect_reply()
        transport = self.channel.transport
        if transport is not None and not transport.is_closing():
            body_length = sum(len(chunk) for chunk in job.chunks)
            transport.write(pack_request_header(job.kind, job.revision, len(job.meta), body_length))
            if job.meta:
                transport.write(job.meta)
            transport.writelines(job.chunks)
        return waiter

    def kill(self) -> None:
        """Kill the worker and anything its script started."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self.channel.transport is not None:
            self.channel.transport.close()

    def exit_description(self) -> str:
        code = self.process.exitcode
        if code is None:
            return "it stopped answering"
        if code < 0:
            try:
                return f"it was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"it was killed by signal {-code}"
        return f"it exited with code {code}"


@dataclass(frozen=True)
class Job:
    """One unit of work: what to do, for which endpoint, on which bytes."""

    kind: JobKind
    chunks: Sequence[bytes]
    meta: bytes = b""
    #: The registry revision the server has seen; workers refresh when theirs differs.
    revision: int = 0


class WorkerPool:
    """A fixed number of worker processes, kept at full strength."""

    def __init__(self, size: int, memory_limit_mb: int, registry_url: str) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.memory_limit_mb = memory_limit_mb
        self.registry_url = registry_url
        self.restarts: collections.Counter[str] = collections.Counter()
        self._context: BaseContext = multiprocessing.get_context("forkserver")
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._workers: set[Worker] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def ready_workers(self) -> int:
        return len(self._workers)

    def start(self) -> None:
        """Begin warming up workers in the background; returns immediately."""
        # The fork server imports these once; every worker forks with them loaded.
        self._context.set_forkserver_preload(list(PRELOADED_MODULES))  # type: ignore[attr-defined]
        for _ in range(self.size):
            self._schedule_spawn()

    async def submit(self, job: Job, timeout: float, timeout_text: str) -> RawReply:
        """Run one job; queueing for a free worker counts against ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        worker = await self._acquire(deadline, timeout_text)
        try:
            reply = await asyncio.wait_for(worker.call(job), max(deadline - loop.time(), 0))
        except TimeoutError:
            self._discard(worker, "timeout")
            raise ScriptTimeout(timeout_text) from None
        except WorkerGone:
            await self._reap(worker)
            self._discard(worker, "crash")
            raise WorkerCrashed(
                "WorkerCrashed : the worker process running this script died "
                f"({worker.exit_description()}); it has been replaced"
            ) from None
        except BaseException:
            # Cancelled mid-job: the worker's state is unknown, so replace it.
            self._discard(worker, "cancelled")
            raise
        if reply.flags & ReplyFlag.MEMORY_EXCEEDED:
            self._discard(worker, "memory")
            raise MemoryLimitExceeded(_info_of(reply))
        self._idle.put_nowait(worker)
        return reply

    async def _acquire(self, deadline: float, timeout_text: str) -> Worker:
        loop = asyncio.get_running_loop()
        while True:
            if self._idle.empty():
                try:
                    worker = await asyncio.wait_for(self._idle.get(), deadline - loop.time())
                except TimeoutError:
                    raise ScriptTimeout(timeout_text) from None
            else:
                worker = self._idle.get_nowait()
            if worker in self._workers:  # skip workers that died while idle
                return worker

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        workers = list(self._workers)
        self._workers.clear()
        for worker in workers:
            worker.kill()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(None, w.process.join, 5) for w in workers),
            return_exceptions=True,
        )

    def _discard(self, worker: Worker, cause: str) -> None:
        if worker not in self._workers:
            return
        self._workers.discard(worker)
        self.restarts[cause] += 1
        worker.kill()
        logger.warning("Replacing worker %d (%s)", worker.pid, cause)
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, worker.process.join, 5)
        self._schedule_spawn()

    async def _reap(self, worker: Worker) -> None:
        """Wait briefly for a dead worker's exit status, for the error message."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, worker.process.join, 1)

    def _schedule_spawn(self) -> None:
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._spawn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            process = self._context.Process(  # type: ignore[attr-defined]
                target=worker_main,
                args=(child_end, self.memory_limit_mb, self.registry_url, os.getpid()),
                daemon=True,
                name="tabpy-worker",
            )
            try:
                await loop.run_in_executor(None, process.start)
                child_end.close()
                _, channel = await loop.create_unix_connection(Channel, sock=parent_end)
                worker = Worker(process, channel)
                ready = await asyncio.wait_for(channel.expect_reply(), _READY_TIMEOUT_SECONDS)
                if not ready.flags & ReplyFlag.READY:
                    raise WorkerGone()
            except (OSError, WorkerGone, TimeoutError) as exc:
                child_end.close()
                parent_end.close()
                if process.pid is not None:
                    process.kill()
                logger.error("A worker failed to start (%r); retrying", exc)
                await asyncio.sleep(_SPAWN_RETRY_SECONDS)
                continue
            if self._closing:
                worker.kill()
                return
            self._workers.add(worker)
            channel.on_lost = lambda worker=worker: self._discard(worker, "crash")
            self._idle.put_nowait(worker)
            logger.debug("Worker %d ready", worker.pid)
            return


def _info_of(reply: RawReply) -> str:
    import json

    try:
        return str(json.loads(bytes(reply.body))["info"])
    except (ValueError, KeyError, TypeError):
        return "the worker exceeded its memory limit and was replaced"
