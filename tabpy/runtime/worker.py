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

import ctypes
import os
import resource
import signal
import socket
from typing import Any

from tabpy.errors import envelope
from tabpy.runtime.evaluate import ERROR_MESSAGE, Reply, handle_evaluate
from tabpy.runtime.namespace import build_namespace
from tabpy.runtime.protocol import (
    REQUEST_HEADER,
    JobKind,
    ReplyFlag,
    pack_reply_header,
)
from tabpy.runtime.script_api import ScriptAPI

_PR_SET_PDEATHSIG = 1


def worker_main(sock: socket.socket, memory_limit_mb: int) -> None:
    """Entry point of a worker process."""
    _detach()
    namespace = build_namespace()
    tabpy = ScriptAPI({})
    _limit_memory(memory_limit_mb)
    _send(sock, 200, ReplyFlag.READY, b"")
    while True:
        try:
            job = _receive(sock)
            if job is None:
                return
            reply = _run(*job, namespace, tabpy)
        except MemoryError:
            job = None
            detail = (
                f"MemoryError : the script used more than the worker memory limit of "
                f"{memory_limit_mb} MB (TABPY_WORKER_MEMORY_LIMIT_MB); its worker was replaced"
            )
            _send(sock, 500, ReplyFlag.MEMORY_EXCEEDED, envelope(ERROR_MESSAGE, detail))
            os._exit(0)
        _send(sock, reply.status, ReplyFlag.NONE, reply.body)


def _run(kind: int, body: bytearray, namespace: dict[str, Any], tabpy: ScriptAPI) -> Reply:
    if kind == JobKind.EVALUATE:
        return handle_evaluate(body, namespace, tabpy)
    return Reply(500, envelope(ERROR_MESSAGE, f"unknown job kind {kind}"))


def _detach() -> None:
    """Own session (so a kill reaches the script's children); die with the server."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setsid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - non-Linux
        pass


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


def _receive(sock: socket.socket) -> tuple[int, Any] | None:
    header = bytearray(REQUEST_HEADER.size)
    if not _recv_exactly(sock, memoryview(header)):
        return None
    kind, length = REQUEST_HEADER.unpack(header)
    body = bytearray(length)
    if not _recv_exactly(sock, memoryview(body)):
        return None
    return kind, body


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
