"""The worker process: receive a job, run it, send the reply, repeat.

Workers are forked from a warmed-up fork server (see ``pool``), so heavy
imports such as pandas happen once, not once per worker or per replacement.
This module itself stays light: the server process imports it to name the
worker's entry point.  A worker
trusts nothing it runs: a script can loop forever (the pool kills it), exhaust
memory (the address-space limit turns that into ``MemoryError``; the worker
reports it and exits), call ``sys.exit`` (caught) or crash the interpreter (the
pool sees the closed socket and replaces the worker).
"""

from __future__ import annotations

import functools
import os
import resource
import signal
import socket
import threading
import time
from typing import Any, NamedTuple

import orjson

from tabpy.errors import envelope
from tabpy.registry.store import Registry
from tabpy.runtime.endpoints import EndpointCache, RegistryUnavailable
from tabpy.runtime.evaluate import ERROR_MESSAGE, Reply, handle_evaluate
from tabpy.runtime.namespace import build_namespace
from tabpy.runtime.protocol import (
    REQUEST_HEADER,
    JobKind,
    ReplyFlag,
    pack_reply_header,
)
from tabpy.runtime.query import handle_load, handle_query
from tabpy.runtime.script_api import ScriptAPI

_SERVER_CHECK_SECONDS = 1.0


def worker_main(
    sock: socket.socket, memory_limit_mb: int, registry_url: str, server_pid: int
) -> None:
    """Entry point of a worker process."""
    _detach(server_pid)
    namespace = build_namespace()
    endpoints = EndpointCache(functools.partial(_open_registry, registry_url))
    tabpy = ScriptAPI(endpoints)
    _limit_memory(memory_limit_mb)
    _send(sock, 200, ReplyFlag.READY, b"")
    while True:
        try:
            job = _receive(sock)
            if job is None:
                return
            reply = _run(job, namespace, endpoints, tabpy)
        except MemoryError:
            job = None
            detail = (
                f"MemoryError : the script used more than the worker memory limit of "
                f"{memory_limit_mb} MB (TABPY_WORKER_MEMORY_LIMIT_MB); its worker was replaced"
            )
            _send(sock, 500, ReplyFlag.MEMORY_EXCEEDED, envelope(ERROR_MESSAGE, detail))
            os._exit(0)
        _send(sock, reply.status, reply.flags, reply.body)


def _run(job: Job, namespace: dict[str, Any], endpoints: EndpointCache, tabpy: ScriptAPI) -> Reply:
    endpoints.observe(job.revision)
    if job.kind == JobKind.EVALUATE:
        return handle_evaluate(job.body, namespace, tabpy)
    if job.kind == JobKind.EVALUATE_TABLE:
        from tabpy.arrow.worker import handle_evaluate_table  # pyarrow only when used

        return handle_evaluate_table(job.meta, namespace, tabpy)
    target = orjson.loads(job.meta)
    try:
        if job.kind == JobKind.QUERY:
            return handle_query(job.body, target["name"], target["version"], endpoints)
        if job.kind == JobKind.LOAD:
            return handle_load(target["name"], target["version"], endpoints)
    except RegistryUnavailable as exc:
        return Reply(503, envelope("Registry unavailable", str(exc)))
    return Reply(500, envelope(ERROR_MESSAGE, f"unknown job kind {job.kind}"))


def _open_registry(url: str) -> Registry:
    return Registry(url, create=False)


def _detach(server_pid: int) -> None:
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
    threading.Thread(target=_exit_with, args=(server_pid,), daemon=True).start()


def _ignore(signum: int, frame: object) -> None:
    """Shutdown signals are the pool's business, not the worker's."""


def _exit_with(server_pid: int) -> None:
    """Exit if the server is gone, even while a script never yields to read its socket."""
    while True:
        time.sleep(_SERVER_CHECK_SECONDS)
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # pragma: no cover - the pid was reused by another user
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


class Job(NamedTuple):
    kind: int
    revision: int
    meta: bytearray
    body: bytearray


def _receive(sock: socket.socket) -> Job | None:
    header = bytearray(REQUEST_HEADER.size)
    if not _recv_exactly(sock, memoryview(header)):
        return None
    kind, revision, meta_length, body_length = REQUEST_HEADER.unpack(header)
    meta = bytearray(meta_length)
    body = bytearray(body_length)
    if not (_recv_exactly(sock, memoryview(meta)) and _recv_exactly(sock, memoryview(body))):
        return None
    return Job(kind, revision, meta, body)


def _recv_exactly(sock: socket.socket, view: memoryview) -> bool:
    received = 0
    while received < len(view):
        count = sock.recv_into(view[received:])
        if count == 0:
            return False
        received += count
    return True


def _send(sock: socket.socket, status: int, flags: ReplyFlag, body: bytes) -> None:
    sock.sendall(pack_reply_header(status, flags, len(body)))
    if body:
        sock.sendall(body)
