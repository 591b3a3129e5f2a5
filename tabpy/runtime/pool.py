"""Supervision of the worker processes.

Workers are forked from a warm template process that has already imported the worker module
(:mod:`tabpy.runtime.template`), so a replacement is ready in milliseconds, and holds none of
the server's ``TABPY_*`` variables. Each worker owns one socket pair; a :class:`Channel` reads
frames (:mod:`tabpy.runtime.protocol`) straight into buffers of the announced sizes.

The pool guarantees capacity: a worker whose job times out is killed with everything its
script started (:mod:`tabpy.runtime.containment`), a worker that dies or exceeds its memory
limit is discarded, and every discarded worker is replaced at once. With ``isolate_callers``,
a worker that has run one caller's code never runs another's: the pool prefers an idle worker
bound to the same caller, and otherwise recycles one into a clean worker from the template.
It also knows which endpoint objects each worker holds, so it sends an object's bytes to a
worker once, and answers a script's ``tabpy.query`` from its
:class:`~tabpy.runtime.directory.EndpointDirectory`.

Where workers come from is a :class:`~tabpy.runtime.launchers.Launcher`: a template in the
server's own interpreter, or one in another Python environment
(:class:`~tabpy.runtime.template.TemplateLauncher`). A pool for one environment answers a
script's ``tabpy.query`` of an endpoint deployed in another by handing the call to ``remote``
(the :class:`~tabpy.runtime.pools.PoolSet` runs it in that environment's pool).
"""

from __future__ import annotations

import array
import asyncio
import collections
import enum
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

import orjson

from tabpy.errors import MemoryLimitExceeded, ScriptTimeout, WorkerCrashed
from tabpy.runtime.containment import Containment, ContainmentMode, choose_containment
from tabpy.runtime.directory import Deployed, EndpointDirectory
from tabpy.runtime.environments import Interpreter
from tabpy.runtime.handoff import Deadline, IdleWorkers
from tabpy.runtime.launchers import Launcher, WorkerProcess
from tabpy.runtime.outcomes import raise_for_outcome
from tabpy.runtime.protocol import (
    FRAME_HEADER,
    RESULT_ANSWER,
    Artifact,
    FrameType,
    Job,
    Outcome,
    QueryCheck,
    Reply,
    decode_reply,
    decode_request_meta,
    encode_answer_meta,
    encode_job_meta,
    pack_header,
)
from tabpy.runtime.shared_body import SHARED_MIN_BYTES, SharedRegion, region_for
from tabpy.runtime.template import TemplateLauncher
from tabpy.runtime.worker import WorkerOptions

__all__ = ["Channel", "PoolOptions", "RemoteCall", "RestartCause", "WorkerGone", "WorkerPool"]

logger = logging.getLogger(__name__)

_SPAWN_RETRY_SECONDS = 1.0
#: Clean workers kept beside the pool when callers are isolated, so a switch waits for no fork.
_SPARE_WORKERS = 1
#: Bytes a worker socket reads at once before a frame gets buffers of its own sizes.
_INBOX_BYTES = 64 * 1024
_READY_TIMEOUT_SECONDS = 120.0
#: ``asyncio.wait_for`` raises this; on Python 3.10 it is not the built-in ``TimeoutError``.
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)


class RestartCause(str, enum.Enum):
    """Why a worker was replaced."""

    #: Its job ran past the timeout.
    TIMEOUT = "timeout"
    #: It hit its memory limit.
    MEMORY = "memory"
    #: The process died.
    CRASH = "crash"
    #: The caller went away mid-job, leaving the worker in an unknown state.
    CANCELLED = "cancelled"
    #: It had run another caller's code (``isolate_callers``).
    RECYCLED = "recycled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class PoolOptions:
    size: int
    #: Per worker, on top of what it uses after start-up; 0 for no limit.
    memory_limit_mb: int = 0
    #: Seconds a job may take, waiting for a free worker included.
    timeout: float = 30.0
    #: The timeout as the 408 message shows it (``30``, or ``3.0``); by default ``str(timeout)``.
    timeout_text: str = ""
    #: Whether ``"dataPath"`` in an ``/evaluate`` request names a stored table.
    table_requests: bool = False
    #: Job handler name -> the module defining it in the worker (``tabpy.runtime.job_handlers``).
    extensions: Mapping[str, str] = field(default_factory=dict)
    #: How to kill everything a script started (``tabpy.runtime.containment``).
    containment: ContainmentMode = "auto"
    #: Whether a worker, once it has run one caller's code, only ever runs that caller's.
    isolate_callers: bool = False
    #: The unprivileged OS user workers switch to (the server must be root); None: the server's.
    worker_user: str | None = None


#: Runs a script's ``tabpy.query`` of an endpoint in another environment: the endpoint, the
#: call's arguments (``{"data": ...}``), the job's caller and rights; returns the result JSON.
RemoteCall = Callable[[Deployed, bytes, str, "QueryCheck | None"], Awaitable[bytes]]


class WorkerGone(Exception):
    """The worker's socket closed before a complete reply arrived."""


class Channel(asyncio.BufferedProtocol):
    """The server's end of one worker socket: at most one reply outstanding.

    Frames are read into a small inbox; whatever frames arrived whole are taken from it
    (usually a reply: header and body in one ``recv``). A frame larger than what arrived gets
    buffers of its announced sizes, and the rest of it is read straight into them.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._inbox = bytearray(_INBOX_BYTES)
        self._inbox_filled = 0
        # A frame being read into its own buffers: the sections still to fill (the first is
        # being filled, up to ``_filled``); empty while reading into the inbox.
        self._sections: list[bytearray] = []
        self._filled = 0
        self._type = self._code = 0
        self._meta: bytes | bytearray = b""
        self._body: bytes | bytearray = b""
        self._waiter: asyncio.Future[Reply] | None = None
        self._lost = False
        # Kept: asyncio.get_running_loop() makes a getpid() system call on every use.
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self._loop.create_future()
        #: Called with a REQUEST frame's meta and body; answers a script's ``tabpy.query``.
        self.on_request: Callable[[bytes | bytearray, bytes | bytearray], None] | None = None
        #: Called when the socket closes; the pool uses it to notice idle deaths.
        self.on_lost: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def expect_reply(self) -> asyncio.Future[Reply]:
        waiter = self._loop.create_future()
        if self._lost:
            waiter.set_exception(WorkerGone())
        self._waiter = waiter
        return waiter

    def write(self, parts: list[bytes | bytearray]) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.writelines(parts)

    def write_with_fd(self, data: bytes, fd: int) -> bool:
        """Send ``data`` with the descriptor ``fd`` attached (``SCM_RIGHTS``); False, having
        sent nothing, if that cannot be done now (frames still queued, or a full socket)."""
        transport = self.transport
        if transport is None or transport.is_closing() or transport.get_write_buffer_size():
            return False
        raw = transport.get_extra_info("socket")
        # A second socket object on a duplicate of the descriptor: the transport's own does not
        # offer sendmsg. Nothing is queued (checked above), so the order of frames holds.
        with socket.socket(fileno=os.dup(raw.fileno())) as sock:
            try:
                sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fd_bytes(fd))])
            except (BlockingIOError, InterruptedError):
                return False
        if sent < len(data):
            transport.write(data[sent:])
        return True

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._sections:
            return memoryview(self._sections[0])[self._filled :]
        return memoryview(self._inbox)[self._inbox_filled :]

    def buffer_updated(self, nbytes: int) -> None:
        sections = self._sections
        if sections:
            self._filled += nbytes
            if self._filled < len(sections[0]):
                return
            sections.pop(0)
            self._filled = 0
            if not sections:
                self._deliver(self._type, self._code, self._meta, self._body)
            return
        self._inbox_filled += nbytes
        self._take_frames()

    def _take_frames(self) -> None:
        """Deliver every whole frame in the inbox; start buffers for a partial one."""
        inbox, end, at = self._inbox, self._inbox_filled, 0
        header_size = FRAME_HEADER.size
        while end - at >= header_size:
            frame_type, code, meta_n, attachment_n, body_n = FRAME_HEADER.unpack_from(inbox, at)
            start = at + header_size
            if end - start >= meta_n + attachment_n + body_n:
                body_start = start + meta_n + attachment_n
                at = body_start + body_n
                self._deliver(frame_type, code, inbox[start : start + meta_n], inbox[body_start:at])
                continue
            # Larger than what arrived: its own buffers, the part already here copied in.
            meta, attachment, body = bytearray(meta_n), bytearray(attachment_n), bytearray(body_n)
            self._type, self._code, self._meta, self._body = frame_type, code, meta, body
            arrived = memoryview(inbox)[start:end]
            for section in (meta, attachment, body):
                taken = min(len(section), len(arrived))
                section[:taken] = arrived[:taken]
                arrived = arrived[taken:]
                if taken < len(section):
                    if not self._sections:  # only the first unfinished one has bytes already
                        self._filled = taken
                    self._sections.append(section)
            at = end
            break
        if at:
            left = end - at
            inbox[:left] = inbox[at:end]
            self._inbox_filled = left

    def _deliver(
        self, frame_type: int, code: int, meta: bytes | bytearray, body: bytes | bytearray
    ) -> None:
        if frame_type == FrameType.REPLY:
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(decode_reply(code, meta, body))
        elif frame_type == FrameType.REQUEST:
            if self.on_request is not None:
                self.on_request(meta, body)
        elif frame_type == FrameType.READY:
            if not self.ready.done():
                self.ready.set_result(None)
        elif self.transport is not None:  # a worker that breaks the protocol is not trusted
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if not self.ready.done():
            self.ready.set_exception(WorkerGone())
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(WorkerGone())
        elif self.on_lost is not None:
            self.on_lost()


def _fd_bytes(fd: int) -> bytes:
    return array.array("i", [fd]).tobytes()


class Worker:
    def __init__(self, process: WorkerProcess, channel: Channel, containment: Containment) -> None:
        self.process = process
        self.channel = channel
        self.containment = containment
        #: The caller whose code it has run (``Job.principal``); None while it is clean.
        self.principal: str | None = None
        #: Kept clean, outside the idle queue, to replace a recycled worker at once.
        self.spare = False
        #: SHA-256 of every endpoint object this worker has been sent.
        self.artifacts: set[str] = set()
        #: The directory generation this worker's objects were last checked against.
        self.generation = 0
        #: The running job's ``may_query``: what its script may ``tabpy.query``.
        self._may_query: QueryCheck | None = None
        #: The running job's caller, for a ``tabpy.query`` run in another pool on its behalf.
        self._caller = ""
        #: Where this worker's large job bodies go (:mod:`tabpy.runtime.shared_body`).
        self.shared: SharedRegion | None = None

    @property
    def pid(self) -> int:
        return cast(int, self.process.pid)

    def call(self, job: Job, directory: EndpointDirectory) -> asyncio.Future[Reply]:
        waiter = self.channel.expect_reply()
        self._may_query = job.may_query
        self._caller = job.principal
        forget = self._stale(directory)
        artifact, data = self._to_send(job.artifact)
        meta = encode_job_meta(job.meta, artifact, forget)
        body = job.body
        body_length = 0
        for chunk in body:
            body_length += len(chunk)
        if body_length >= SHARED_MIN_BYTES and self._send_shared(job, meta, data, body_length):
            return waiter
        header = pack_header(FrameType.JOB, job.kind, len(meta), len(data), body_length)
        if meta or data:
            self.channel.write([header, meta, data, *body])
        else:  # the usual /evaluate job
            self.channel.write([header, *body])
        return waiter

    def _send_shared(self, job: Job, meta: bytes, data: bytes, body_length: int) -> bool:
        """Put the body in this worker's shared region and send the frame that points to it
        (:mod:`tabpy.runtime.shared_body`); False if it must go through the socket instead."""
        try:
            region = region_for(self.shared, body_length)
        except OSError:  # no memfd here, or no memory for it: the socket still works
            self.shared = None
            return False
        self.shared = region
        region.fill(job.body)
        header = pack_header(FrameType.SHARED_JOB, job.kind, len(meta), len(data), body_length)
        if region.fd is None:
            self.channel.write([header, meta, data])
            return True
        if not self.channel.write_with_fd(b"".join((header, meta, data)), region.fd):
            region.close()
            self.shared = None
            return False
        region.handed_over()
        return True

    def answer(
        self,
        request: bytes | bytearray,
        directory: EndpointDirectory,
        body: bytes | bytearray = b"",
        interpreter: Interpreter | None = None,
        remote: RemoteCall | None = None,
    ) -> asyncio.Future[None] | None:
        """Tell a script which version of the endpoint it queries is current, if its job's
        caller may query it (``Job.may_query``; the role first, as over HTTP).

        An endpoint of another environment than ``interpreter`` is run by ``remote`` (when
        the script sends its call); the returned future completes when its result is sent.
        """
        try:
            question = decode_request_meta(request)
        except (ValueError, KeyError, TypeError):
            question = None
        name = None if question is None else question.name
        refused = self._may_query(name) if name is not None and self._may_query else None
        deployed = directory.find(name) if name is not None and refused is None else None
        elsewhere = (
            deployed is not None and remote is not None and deployed.interpreter != interpreter
        )
        if question is not None and question.call:
            if refused is not None:
                self._send_result(orjson.dumps({"message": refused.message, "info": refused.info}))
                return None
            if deployed is None or remote is None or not elsewhere:
                # Deleted or moved since the script asked; it asks afresh on its next query.
                gone = f"Endpoint '{name}' does not exist in another environment"
                self._send_result(orjson.dumps({"message": "UnknownURI", "info": gone}))
                return None
            return asyncio.ensure_future(self._call_elsewhere(remote, deployed, bytes(body)))
        if deployed is None:
            meta, data = encode_answer_meta(None, None, refused), b""
        elif elsewhere:
            meta, data = encode_answer_meta(None, None, elsewhere=True), b""
        else:
            artifact, data = self._to_send(deployed.artifact)
            meta = encode_answer_meta(deployed.endpoint, artifact)
        header = pack_header(FrameType.ANSWER, 0, len(meta), len(data), 0)
        self.channel.write([header, meta, data] if data else [header, meta])
        return None

    async def _call_elsewhere(self, remote: RemoteCall, deployed: Deployed, body: bytes) -> None:
        self._send_result(await remote(deployed, body, self._caller, self._may_query))

    def _send_result(self, result: bytes) -> None:
        header = pack_header(FrameType.ANSWER, 0, len(RESULT_ANSWER), 0, len(result))
        self.channel.write([header, RESULT_ANSWER, result])

    def _to_send(self, artifact: Artifact | None) -> tuple[Artifact | None, bytes]:
        """What to tell the worker about an object: nothing if it holds it, else the bytes."""
        if artifact is None:
            return None, b""
        sha256 = artifact.sha256
        if artifact.data is None or sha256 is None:
            return artifact, b""  # it cannot be loaded; the worker reports why
        if sha256 in self.artifacts:
            return None, b""
        self.artifacts.add(sha256)
        return artifact, artifact.data

    def _stale(self, directory: EndpointDirectory) -> list[str]:
        """Objects the worker holds that are no longer deployed (checked once per change)."""
        if self.generation == directory.generation:
            return []
        self.generation = directory.generation
        stale = [sha256 for sha256 in self.artifacts if not directory.is_live(sha256)]
        self.artifacts.difference_update(stale)
        return stale

    def kill(self) -> None:
        """Kill the worker and anything its script started."""
        self.containment.kill(self.pid)
        if self.channel.transport is not None:
            self.channel.transport.close()
        if self.shared is not None:
            self.shared.close()
            self.shared = None

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


class WorkerPool:
    """A fixed number of worker processes, kept at full strength."""

    def __init__(
        self,
        options: PoolOptions,
        *,
        launcher: Launcher | None = None,
        directory: EndpointDirectory | None = None,
        interpreter: Interpreter | None = None,
        containment: Containment | None = None,
    ) -> None:
        """``launcher``: where workers come from (default: a template in the server's own
        interpreter, :meth:`TemplateLauncher.own`). ``directory``: shared by the pools of one
        server. ``interpreter``: the environment the workers run (None: the server's own).
        ``containment``: one the caller owns and closes (pools of one server share it); by
        default the pool chooses and owns its own."""
        if options.size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.options = options
        self.timeout_text = options.timeout_text or str(options.timeout)
        #: What workers may run; the catalog keeps it current.
        self.directory = EndpointDirectory() if directory is None else directory
        self.interpreter = interpreter
        #: Runs a script's tabpy.query of another environment's endpoint; None: every
        #: endpoint runs in this pool's workers (the pool is alone).
        self.remote: RemoteCall | None = None
        self.restarts: collections.Counter[RestartCause] = collections.Counter()
        self.launcher: Launcher = TemplateLauncher.own() if launcher is None else launcher
        self._owns_containment = containment is None
        self._idle: IdleWorkers[Worker] = IdleWorkers()
        self._workers: set[Worker] = set()
        self._spares: collections.deque[Worker] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        #: Chosen when the pool starts (``start``), from ``options.containment``.
        self.containment: Containment | None = containment
        #: Jobs submitted and not finished (the pool set stops only pools without any).
        self.in_flight = 0
        #: Why the last worker failed to start (None once one has started): a broken
        #: environment's interpreter, for instance. A job that found no worker says so.
        self.start_failure: str | None = None

    @property
    def size(self) -> int:
        return self.options.size

    @property
    def ready_workers(self) -> int:
        return len(self._workers) - len(self._spares)

    def start(self) -> None:
        """Begin warming up workers in the background; returns immediately."""
        if self.containment is None:
            self.containment = choose_containment(self.options.containment)
            logger.info("Worker containment: %s", self.containment.name)
        self.launcher.prepare()
        for _ in range(self.size):
            self._schedule_spawn()
        if self.options.isolate_callers:
            for _ in range(_SPARE_WORKERS):
                self._schedule_spawn(spare=True)

    async def submit(self, job: Job) -> Reply:
        """Run one job; queueing for a free worker counts against the timeout.

        Returns an OK or TABLE_REQUEST reply; every other outcome is raised as the
        :mod:`tabpy.errors` exception it stands for (:mod:`tabpy.runtime.outcomes`).
        """
        self.in_flight += 1
        try:
            return await self._submit(job)
        finally:
            self.in_flight -= 1

    async def _submit(self, job: Job) -> Reply:
        loop = asyncio.get_running_loop()
        deadline = Deadline(loop, loop.time() + self.options.timeout)
        try:
            worker = await self._acquire(deadline, job.principal)
            if deadline.passed:
                # Late already (the worker came in the instant the deadline passed): the
                # worker has not started anything, so it stays.
                self._idle.put_nowait(worker)
                raise ScriptTimeout(self.timeout_text)
            # A reply that comes too late finds its future already failed and is dropped.
            waiter = deadline.awaiting = worker.call(job, self.directory)
            try:
                reply = await waiter
            except _TIMEOUTS:
                self._discard(worker, RestartCause.TIMEOUT)
                raise ScriptTimeout(self.timeout_text) from None
            except WorkerGone:
                await self._reap(worker)
                self._discard(worker, RestartCause.CRASH)
                raise WorkerCrashed(
                    "WorkerCrashed : the worker process running this script died "
                    f"({worker.exit_description()}); it has been replaced"
                ) from None
            except BaseException:
                # Cancelled mid-job: the worker's state is unknown, so replace it.
                self._discard(worker, RestartCause.CANCELLED)
                raise
        finally:
            deadline.cancel()
        if reply.outcome is Outcome.MEMORY_EXCEEDED:
            self._discard(worker, RestartCause.MEMORY)
            raise MemoryLimitExceeded(str(reply.info))
        self._idle.put_nowait(worker)
        return raise_for_outcome(reply)

    async def _acquire(self, deadline: Deadline, principal: str) -> Worker:
        loop = asyncio.get_running_loop()
        isolate = self.options.isolate_callers
        while True:
            if self._idle.empty():
                try:
                    worker = await self._before(deadline, self._idle.wait(loop))
                except ScriptTimeout:
                    if self.start_failure is not None and not self._workers:
                        raise WorkerCrashed(
                            f"WorkerCrashed : no worker process could start ({self.start_failure})"
                        ) from None
                    raise
            else:
                worker = self._idle.get_nowait()
            if worker not in self._workers:  # skip workers that died while idle
                continue
            if not isolate or worker.principal == principal:
                return worker
            chosen = self._select(worker, principal)
            if isinstance(chosen, asyncio.Future):
                chosen = await self._before(deadline, chosen)
            chosen.principal = principal
            return chosen

    async def _before(self, deadline: Deadline, getting: asyncio.Future[Worker]) -> Worker:
        """``await getting``, or ScriptTimeout when the job's deadline passes first."""
        deadline.awaiting = getting
        try:
            return await getting
        except _TIMEOUTS:
            raise ScriptTimeout(self.timeout_text) from None
        finally:
            deadline.awaiting = None

    def _select(self, first: Worker, principal: str) -> Worker | asyncio.Future[Worker]:
        """An idle worker for ``principal``: its own, else a clean one, else a recycled one.

        A recycled worker is replaced from the template; its replacement is handed to this
        caller (the future) rather than queued, so waiting callers do not recycle them all.

        Only reached when ``first`` belongs to someone else, so a single caller never pays
        for the scan.
        """
        idle = [first]
        while not self._idle.empty():
            idle.append(self._idle.get_nowait())
        idle = [worker for worker in idle if worker in self._workers]
        chosen = next((w for w in idle if w.principal == principal), None)
        if chosen is None:
            chosen = next((w for w in idle if w.principal is None), None)
        for worker in idle:
            if worker is not chosen:
                self._idle.put_nowait(worker)
        if chosen is not None:
            return chosen
        # Every idle worker has run someone else's code: recycle one. A spare takes its place
        # at once (and is replaced off the request path); without one, the caller gets the
        # replacement as soon as it is ready.
        victim = self._idle.get_nowait()
        if self._spares:
            chosen = self._spares.popleft()
            chosen.spare = False
            self._discard(victim, RestartCause.RECYCLED, spare=True)
            return chosen
        handoff: asyncio.Future[Worker] = asyncio.get_running_loop().create_future()
        self._discard(victim, RestartCause.RECYCLED, handoff)
        return handoff

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
        for worker in workers:
            worker.containment.release(worker.pid)
        await loop.run_in_executor(None, self.launcher.close)
        if self.containment is not None and self._owns_containment:
            self.containment.close()

    def _discard(
        self,
        worker: Worker,
        cause: RestartCause,
        handoff: asyncio.Future[Worker] | None = None,
        *,
        spare: bool = False,
    ) -> None:
        """Kill ``worker`` and start its replacement: for ``handoff``, as a spare, or idle."""
        if worker not in self._workers:
            return
        self._workers.discard(worker)
        if worker.spare:
            self._spares.remove(worker)
            spare = True
        self.restarts[cause] += 1
        worker.kill()
        if cause is RestartCause.RECYCLED:
            logger.info("Recycling worker %d: it ran another caller's code", worker.pid)
        else:
            logger.warning("Replacing worker %d (%s)", worker.pid, cause)
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._release, worker)
        self._schedule_spawn(handoff, spare=spare)

    def _release(self, worker: Worker) -> None:
        """Reap a killed worker and remove what containment kept for it (off the loop)."""
        worker.process.join(5)
        worker.containment.release(worker.pid)

    async def _reap(self, worker: Worker) -> None:
        """Wait briefly for a dead worker's exit status, for the error message."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, worker.process.join, 1)

    def _schedule_spawn(
        self, handoff: asyncio.Future[Worker] | None = None, *, spare: bool = False
    ) -> None:
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._spawn(handoff, spare))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _worker_options(self) -> WorkerOptions:
        options = self.options
        return WorkerOptions(
            memory_limit_mb=options.memory_limit_mb,
            server_pid=os.getpid(),
            table_requests=options.table_requests,
            extensions=dict(options.extensions),
            subreaper=self._containment().name == "subreaper",
            user=options.worker_user,
        )

    def _containment(self) -> Containment:
        if self.containment is None:
            raise RuntimeError("the pool has not been started")
        return self.containment

    async def _spawn(self, handoff: asyncio.Future[Worker] | None, spare: bool) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            process = self.launcher.process(child_end, self._worker_options())
            try:
                await loop.run_in_executor(None, process.start)
                child_end.close()
                # Before the worker runs any job, so nothing a script starts is left outside.
                self._containment().adopt(cast(int, process.pid), self.options.memory_limit_mb)
                _, channel = await loop.create_unix_connection(Channel, sock=parent_end)
                worker = Worker(process, channel, self._containment())
                await asyncio.wait_for(channel.ready, _READY_TIMEOUT_SECONDS)
            except (OSError, WorkerGone, *_TIMEOUTS) as exc:
                child_end.close()
                parent_end.close()
                if process.pid is not None:
                    process.kill()
                self.start_failure = str(exc) or type(exc).__name__
                logger.error("A worker failed to start (%r); retrying", exc)
                await asyncio.sleep(_SPAWN_RETRY_SECONDS)
                continue
            if self._closing:
                worker.kill()
                return
            self.start_failure = None
            self._workers.add(worker)
            channel.on_lost = lambda worker=worker: self._discard(worker, RestartCause.CRASH)
            channel.on_request = lambda meta, body, worker=worker: self._answer(worker, meta, body)
            if spare:
                worker.spare = True
                self._spares.append(worker)
            elif handoff is not None and not handoff.done():
                handoff.set_result(worker)
            else:
                self._idle.put_nowait(worker)
            logger.debug("Worker %d ready", worker.pid)
            return

    def _answer(self, worker: Worker, meta: bytes | bytearray, body: bytes | bytearray) -> None:
        call = worker.answer(meta, self.directory, body, self.interpreter, self.remote)
        if call is not None:
            task = cast("asyncio.Task[None]", call)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
