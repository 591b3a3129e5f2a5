"""The worker process: receive a job, run it, send the reply, repeat.

Workers are forked from a warmed-up template (see ``template``), so heavy imports such as
pandas happen once, not once per worker or per replacement. This module itself stays light:
the server process imports it to name the worker's entry point, and the worker side as a whole
needs only the standard library, cloudpickle and orjson.

A worker trusts nothing it runs: a script can loop forever (the pool kills it), exhaust memory
(the address-space limit turns that into ``MemoryError``; the worker reports it and exits), call
``sys.exit`` (caught) or crash the interpreter (the pool sees the closed socket and replaces
the worker). It holds no secrets either: no registry connection (endpoint objects arrive over
its socket) and no ``TABPY_*`` environment variables.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import pwd
import resource
import signal
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tabpy.errors import SCRIPT_ERROR
from tabpy.runtime.containment import become_subreaper
from tabpy.runtime.endpoint_cache import EndpointCache
from tabpy.runtime.evaluate import handle_evaluate
from tabpy.runtime.heap import Heap
from tabpy.runtime.job_handlers import JobContext, JobHandlers, UnknownHandler
from tabpy.runtime.namespace import build_namespace
from tabpy.runtime.protocol import (
    FRAME_HEADER,
    Elsewhere,
    EndpointRef,
    EvaluateMeta,
    ExtensionMeta,
    FrameType,
    LoadMeta,
    Outcome,
    QueryMeta,
    Refused,
    Reply,
    decode_answer_meta,
    decode_job_meta,
    encode_reply_meta,
    encode_request_meta,
    pack_header,
)
from tabpy.runtime.query import handle_load, handle_query
from tabpy.runtime.script_api import ScriptAPI
from tabpy.runtime.shared_body import FD_SPACE, SharedView, received_fds

__all__ = ["ENVIRONMENT_PREFIX", "WorkerOptions", "scrub_environment", "worker_main"]

_SERVER_CHECK_SECONDS = 1.0
#: Variables a worker must not see: the server's configuration, secrets included.
ENVIRONMENT_PREFIX = "TABPY_"
#: Frames up to this size go out in one system call (joined); larger bodies are not copied.
_JOIN_BYTES = 64 * 1024


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker is told when it starts (sent to its template as JSON)."""

    memory_limit_mb: int
    server_pid: int
    #: Whether ``"dataPath"`` in an ``/evaluate`` request names a stored table on this server.
    table_requests: bool = False
    #: Job handler name -> the module that defines it (``tabpy.runtime.job_handlers``).
    extensions: Mapping[str, str] = field(default_factory=dict)
    #: Whether to reap the orphans a script leaves (``tabpy.runtime.containment``).
    subreaper: bool = False
    #: The unprivileged account to run as (``TABPY_WORKER_USER``); None keeps the server's.
    user: str | None = None


@dataclass(slots=True)
class Frame:
    type: int
    code: int
    meta: bytearray
    attachment: bytearray
    #: A view of the shared region when the body came that way (``FrameType.SHARED_JOB``).
    body: bytearray | memoryview


class Connection:
    """The worker's end of its socket. One frame at a time, whichever thread sends it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.RLock()
        #: Where large job bodies arrive (:mod:`tabpy.runtime.shared_body`).
        self.shared = SharedView()

    def receive(self) -> Frame | None:
        header = bytearray(FRAME_HEADER.size)
        fds: list[int] = []
        if not _recv_header(self.sock, memoryview(header), fds):
            return None
        frame_type, code, meta_length, attachment_length, body_length = FRAME_HEADER.unpack(header)
        for fd in fds[1:]:  # at most one is ever sent; more is not the server's doing
            os.close(fd)
        if fds:
            self.shared.adopt(fds[0])
        shared = frame_type == FrameType.SHARED_JOB
        meta, attachment = bytearray(meta_length), bytearray(attachment_length)
        body: bytearray | memoryview = bytearray(0 if shared else body_length)
        for section in (meta, attachment, body):
            if section and not _recv_exactly(self.sock, memoryview(section)):
                return None
        if shared:
            frame_type = FrameType.JOB
            body = self.shared.body(body_length)
        return Frame(frame_type, code, meta, attachment, body)

    def send(
        self, frame: FrameType, code: int, meta: bytes = b"", body: bytes | bytearray = b""
    ) -> None:
        header = pack_header(frame, code, len(meta), 0, len(body))
        with self.lock:
            if len(body) <= _JOIN_BYTES:
                self.sock.sendall(b"".join((header, meta, body)))
                return
            self.sock.sendall(header + meta)
            self.sock.sendall(body)

    def send_reply(self, reply: Reply) -> None:
        self.send(FrameType.REPLY, reply.outcome, encode_reply_meta(reply), reply.body)


class ServerEndpoints:
    """Asks the server, mid-job, for the endpoint a script queries (``tabpy.query``)."""

    def __init__(self, connection: Connection, cache: EndpointCache) -> None:
        self.connection = connection
        self.cache = cache

    def ask(self, name: str) -> EndpointRef | Refused | Elsewhere | None:
        answer = self._exchange(encode_request_meta(name))
        endpoint, artifact = decode_answer_meta(answer.meta, name)
        if artifact is not None:
            self.cache.install(artifact, answer.attachment)
        return endpoint

    def call(self, name: str, arguments: bytes) -> Any:
        """Have the server run ``name`` in its own environment's pool; what tabpy.query returns."""
        answer = self._exchange(encode_request_meta(name, call=True), arguments)
        return orjson.loads(answer.body)

    def _exchange(self, meta: bytes, body: bytes = b"") -> Frame:
        with self.connection.lock:  # a question and its answer stay together
            self.connection.send(FrameType.REQUEST, 0, meta, body)
            answer = self.connection.receive()
        if answer is None or answer.type != FrameType.ANSWER:
            os._exit(1)  # the server is gone, or broke the protocol: nothing left to do
        return answer


def worker_main(
    sock: socket.socket, options: WorkerOptions, namespace: Mapping[str, Any] | None = None
) -> None:
    """Entry point of a worker process.

    ``namespace``: the names scripts see, built by the template before it forked (so that the
    worker inherits it rather than building it again); None builds it here.
    """
    scrub_environment()
    _detach(options.server_pid, tolerate_other_user=options.user is not None)
    if options.user is not None:
        _become(options.user)
    if options.subreaper:
        become_subreaper()
    connection = Connection(sock)
    cache = EndpointCache()
    names = build_namespace() if namespace is None else namespace
    context = JobContext(names, ScriptAPI(cache, ServerEndpoints(connection, cache)))
    handlers = JobHandlers(options.extensions)
    heap = Heap()
    heap.keep_freed_memory(options.memory_limit_mb)
    _limit_memory(options.memory_limit_mb)
    connection.send(FrameType.READY, 0)
    while True:
        # What the job received and made is freed only once its reply is sent: for a million
        # rows that takes tens of milliseconds the client need not wait for.
        leftovers: list[Any] = []
        heap.wait_for_job(sock)
        try:
            with connection.lock:
                frame = connection.receive()
            if frame is None:
                return
            leftovers.append(frame)
            reply = _run(frame, context, cache, handlers, options, leftovers)
            del frame
        except RecursionError as exc:
            # Whatever ran out of stack has unwound; the worker is still sound.
            reply = Reply.failed(Outcome.FAILED, SCRIPT_ERROR, f"RecursionError : {exc}")
        except MemoryError:
            detail = (
                f"MemoryError : the script used more than the worker memory limit of "
                f"{options.memory_limit_mb} MB (TABPY_WORKER_MEMORY_LIMIT_MB); its worker was "
                "replaced"
            )
            connection.send_reply(Reply.failed(Outcome.MEMORY_EXCEEDED, SCRIPT_ERROR, detail))
            os._exit(0)
        connection.send_reply(reply)
        del reply
        leftovers.clear()
        heap.job_done()


def _run(
    frame: Frame,
    context: JobContext,
    cache: EndpointCache,
    handlers: JobHandlers,
    options: WorkerOptions,
    leftovers: list[Any],
) -> Reply:
    if frame.type != FrameType.JOB:
        return Reply.failed(Outcome.FAILED, SCRIPT_ERROR, f"unexpected frame type {frame.type}")
    meta, artifact, forget = decode_job_meta(frame.code, frame.meta)
    cache.forget(forget)
    if artifact is not None:
        cache.install(artifact, frame.attachment)
    if isinstance(meta, EvaluateMeta):
        return handle_evaluate(
            frame.body,
            context.namespace,
            context.tabpy,
            tables=options.table_requests,
            keep=leftovers,
        )
    if isinstance(meta, QueryMeta):
        return handle_query(frame.body, meta.endpoint, cache)
    if isinstance(meta, LoadMeta):
        return handle_load(meta.endpoint, cache)
    assert isinstance(meta, ExtensionMeta)
    try:
        handler = handlers.get(meta.handler)
    except (UnknownHandler, ImportError) as exc:
        return Reply.failed(Outcome.FAILED, SCRIPT_ERROR, f"{type(exc).__name__} : {exc}")
    return handler(meta.params, context, frame.body)


def scrub_environment() -> None:
    """Drop the server's ``TABPY_*`` variables: scripts must not read its settings or secrets."""
    for name in [name for name in os.environ if name.startswith(ENVIRONMENT_PREFIX)]:
        del os.environ[name]


def _become(user: str) -> None:
    """Drop to ``user`` for good, before any job: groups first, while still allowed to."""
    account = pwd.getpwnam(user)
    # Codecs load lazily; the worker's own code needs these whatever the user may read.
    for codec in ("ascii", "latin-1", "utf-8"):
        codecs.lookup(codec)
    os.initgroups(user, account.pw_gid)
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    os.environ.update(HOME=account.pw_dir, USER=user, LOGNAME=user)
    with contextlib.suppress(OSError):
        os.chdir(account.pw_dir)


def _detach(server_pid: int, *, tolerate_other_user: bool = False) -> None:
    """Survive the service manager's shutdown signal; die with the server.

    systemd (and ``timeout``, and Ctrl+C) signal the whole process group, but
    a graceful shutdown needs the workers to finish the requests in flight,
    so they ignore SIGINT and SIGTERM (with a handler, not SIG_IGN, which
    processes started by scripts would inherit).  The pool stops them itself.
    In their own session, a kill on timeout also reaches what a script started.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _ignore)
    os.setsid()
    threading.Thread(target=_exit_with, args=(server_pid, tolerate_other_user), daemon=True).start()


def _ignore(signum: int, frame: object) -> None:
    """Shutdown signals are the pool's business, not the worker's."""


def _exit_with(server_pid: int, tolerate_other_user: bool) -> None:
    """Exit if the server is gone, even while a script never yields to read its socket.

    A worker running as another user may not signal the server, so for it "not permitted"
    means the server is still there.
    """
    while True:
        time.sleep(_SERVER_CHECK_SECONDS)
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            if not tolerate_other_user:  # pragma: no cover - the pid was reused by another user
                os._exit(1)


def _limit_memory(limit_mb: int) -> None:
    """Cap the heap at what is in use now plus the configured allowance."""
    if limit_mb <= 0:
        return
    in_use = _data_segment_bytes()
    limit = in_use + limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _data_segment_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _recv_header(sock: socket.socket, view: memoryview, fds: list[int]) -> bool:
    """:func:`_recv_exactly`, keeping the descriptors that come with the bytes in ``fds``."""
    received = 0
    while received < len(view):
        count, ancillary, _, _ = sock.recvmsg_into([view[received:]], FD_SPACE)
        fds.extend(received_fds(ancillary))
        if count == 0:
            return False
        received += count
    return True


def _recv_exactly(sock: socket.socket, view: memoryview) -> bool:
    received = 0
    while received < len(view):
        count = sock.recv_into(view[received:])
        if count == 0:
            return False
        received += count
    return True
