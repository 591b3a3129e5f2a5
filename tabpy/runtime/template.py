"""A warm template process that forks a pool's workers.

Every pool's workers are forked from a template: the default pool's runs the server's own
interpreter, and a pool for another Python environment runs that environment's::

    <env python> -I -m tabpy.runtime.template <fd>

The template imports the worker module and the optional libraries scripts expect (where the
interpreter has them: pandas, pyarrow, ...) once, collects, and freezes what it holds
(``gc.freeze``), then waits on its control socket. For each request it receives the new
worker's socket (``SCM_RIGHTS``) and its :class:`~tabpy.runtime.worker.WorkerOptions`, forks,
and the child runs :func:`~tabpy.runtime.worker.worker_main`: a worker is ready in
milliseconds, and starts out sharing the template's memory pages. The freeze keeps them shared:
the cycle collector writes to every object it examines, so without it each worker's first
collections would copy the pages of every inherited object. The template reports each child's
pid, and each child's exit status when it ends, so the pool can say how a worker died ("killed
by signal SIGKILL").

A template never holds the server's ``TABPY_*`` variables. An environment's template also runs
with ``-I`` and without the ``PYTHON*`` variables: neither the server's ``PYTHONPATH`` nor the
user's site-packages leak into the environment, whose packages are its own. The server's own
template (:meth:`TemplateLauncher.own`) must import the very ``tabpy`` and packages the server
imports, wherever they came from, so it is given the server's module search path
(``sys.path``) instead. It keeps the ``PYTHON*`` variables (its scripts run in the server's own
environment, so a Python subprocess they start finds the same packages), but still runs with
``-I``, so that none of them changes the path it was given.

The control socket is ``SOCK_SEQPACKET``, so every message (JSON) keeps its boundaries. The
template ends when the socket closes: the pool closed it, or the server died.

This module runs inside environments, so it imports only the standard library and the worker
runtime. The server side is :class:`TemplateLauncher`, the pools' source of workers.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import gc
import json
import logging
import os
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading
import traceback
from typing import Any

from tabpy.runtime.namespace import build_namespace
from tabpy.runtime.worker import ENVIRONMENT_PREFIX, WorkerOptions, worker_main

__all__ = ["TemplateGone", "TemplateLauncher", "TemplateProcess", "template_environment"]

logger = logging.getLogger(__name__)

_MESSAGE_BYTES = 64 * 1024
_FD_SPACE = socket.CMSG_SPACE(array.array("i", [0]).itemsize)
#: Variables that would point the environment's interpreter at the server's packages.
_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
#: How long a fork request may wait for the template (it may still be importing).
_FORK_TIMEOUT_SECONDS = 120.0
#: This module's name, also when it runs as ``__main__`` in a template.
_MODULE = "tabpy.runtime.template"
#: The server's own template: its module search path is the server's (argv[2], JSON).
_OWN_BOOTSTRAP = (
    "import json, sys\n"
    "sys.path[:] = json.loads(sys.argv[2])\n"
    f"from {_MODULE} import main\n"
    "main(int(sys.argv[1]))\n"
)


class TemplateGone(OSError):
    """The template process ended (or never started); the pool retries with a new one."""


def template_environment(
    environ: dict[str, str] | None = None, *, own: bool = False
) -> dict[str, str]:
    """The template's environment: the server's, without its settings and secrets.

    ``own``: for the server's own interpreter, whose template keeps the ``PYTHON*`` variables
    (they name the server's own packages); another environment's drops them.
    """
    source = dict(os.environ if environ is None else environ)
    return {
        name: value
        for name, value in source.items()
        if not name.startswith(ENVIRONMENT_PREFIX) and (own or name not in _PYTHON_VARIABLES)
    }


# --- the server side ---------------------------------------------------------------------------


class TemplateProcess:
    """One worker forked by a template: what the pool knows of a ``multiprocessing`` Process.

    The pid arrives when the template has forked; the exit code when the template has reaped
    the child (a negative number is the signal that killed it, as in ``multiprocessing``).
    """

    def __init__(self, launcher: TemplateLauncher, sock: socket.socket, options: WorkerOptions):
        self._launcher = launcher
        self._sock: socket.socket | None = sock
        self._options = options
        self.pid: int | None = None
        self.exitcode: int | None = None
        self._ended = threading.Event()

    def start(self) -> None:
        """Ask the template for the worker (blocking: the pool calls it off the event loop)."""
        sock, self._sock = self._sock, None
        if sock is None:
            raise RuntimeError("a worker process is started once")
        self.pid = self._launcher.fork(sock, self._options, self)

    def join(self, timeout: float | None = None) -> None:
        self._ended.wait(timeout)

    def kill(self) -> None:
        if self.pid is not None and self.exitcode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    def ended(self, exitcode: int | None) -> None:
        """Called by the launcher: the template reaped the worker (None: the template died)."""
        self.exitcode = exitcode
        self._ended.set()


class _Session:
    """One running template: its process, its socket and the workers it forked."""

    def __init__(self, process: subprocess.Popen[bytes], control: socket.socket) -> None:
        self.process = process
        self.control = control
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        #: The worker whose fork request is outstanding (requests go one at a time).
        self.pending: TemplateProcess | None = None
        self.children: dict[int, TemplateProcess] = {}

    def read(self) -> None:
        """In a thread: fork replies in order, and exits whenever they happen."""
        while True:
            try:
                data = self.control.recv(_MESSAGE_BYTES)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            if "exit" in message:
                child = self.children.pop(int(message["exit"]), None)
                if child is not None:
                    child.ended(int(message["code"]))
                continue
            if "pid" in message and self.pending is not None:
                # Registered here, before the next message (maybe its exit) is read.
                self.children[int(message["pid"])] = self.pending
            self.replies.put(message)
        self.replies.put(None)
        for child in list(self.children.values()):
            child.ended(None)  # its parent is gone, so nobody will report how it ended
        self.children.clear()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.control.shutdown(socket.SHUT_RDWR)
        self.control.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class TemplateLauncher:
    """Starts and talks to one environment's template; the pool's source of workers."""

    def __init__(self, python: str, *, own: bool = False) -> None:
        """``python``: the environment's interpreter. ``own``: it is the server's, and the
        template imports what the server imports (use :meth:`own`)."""
        self.python = python
        self._own = own
        self._lock = threading.Lock()
        self._session: _Session | None = None

    @classmethod
    def own(cls) -> TemplateLauncher:
        """The default pool's launcher: workers in the server's interpreter, with its packages."""
        return cls(sys.executable, own=True)

    def prepare(self) -> None:
        """Start the template now, so it warms up while the pool waits for its first worker.

        A template that cannot start is not an error here: the pool's first worker asks
        again, and its failure is what a job reports.
        """
        with self._lock:
            try:
                self._running()
            except TemplateGone as exc:
                logger.error("%s", exc)

    def process(self, sock: socket.socket, options: WorkerOptions) -> TemplateProcess:
        return TemplateProcess(self, sock, options)

    def fork(self, sock: socket.socket, options: WorkerOptions, child: TemplateProcess) -> int:
        """Send ``sock`` and ``options`` to the template; the new worker's pid."""
        message = json.dumps(dataclasses.asdict(options)).encode()
        with self._lock:
            session = self._running()
            session.pending = child
            fds = array.array("i", [sock.fileno()])
            try:
                session.control.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                reply = session.replies.get(timeout=_FORK_TIMEOUT_SECONDS)
            except (OSError, queue.Empty) as exc:
                self._stop_locked()
                raise TemplateGone(f"the template in {self.python} is silent ({exc})") from None
            finally:
                session.pending = None
                sock.close()  # the template holds its own copy now
            if reply is None:
                raise TemplateGone(f"the template in {self.python} ended")
            if "error" in reply:
                raise OSError(f"the template could not fork a worker: {reply['error']}")
            return int(reply["pid"])

    def close(self) -> None:
        """Stop the template (the pool has killed its workers)."""
        with self._lock:
            self._stop_locked()

    @property
    def pid(self) -> int | None:
        session = self._session
        return None if session is None else session.process.pid

    def _running(self) -> _Session:
        session = self._session
        if session is not None and session.process.poll() is None:
            return session
        self._stop_locked()
        server_end, template_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fd = str(template_end.fileno())
        if self._own:
            # The server's sys.path, as it is now: the same tabpy, the same packages.
            command = [self.python, "-I", "-c", _OWN_BOOTSTRAP, fd, json.dumps(sys.path)]
        else:
            command = [self.python, "-I", "-m", _MODULE, fd]
        try:
            process = subprocess.Popen(
                command,
                pass_fds=(template_end.fileno(),),
                env=template_environment(own=self._own),
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            server_end.close()
            raise TemplateGone(f"cannot start {self.python} ({exc})") from None
        finally:
            template_end.close()
        session = self._session = _Session(process, server_end)
        threading.Thread(target=session.read, daemon=True, name="tabpy-template").start()
        logger.info("Started a worker template in %s (pid %d)", self.python, process.pid)
        return session

    def _stop_locked(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.stop()


# --- the template process ----------------------------------------------------------------------


def main(control_fd: int) -> None:
    """Entry point of the template process."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        # The pool stops the template (by closing its socket), not the shutdown signal.
        signal.signal(signum, _ignore)
    # Imports the optional libraries scripts expect. Built once here, not in each worker: a
    # library that is missing costs each attempt a search of sys.path, and the search dirties
    # about half a megabyte of the pages a worker shares with the template.
    namespace = build_namespace()
    # What is left now is what workers inherit: out of every later collection, so that no
    # collector pass (here or in a worker) copies the pages it sits on.
    gc.collect()
    gc.freeze()
    control = socket.socket(fileno=control_fd)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, _ignore)  # a handler, so the wakeup fd hears of each child
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is control:
                if not _serve_one(control, (wake_read, wake_write), namespace):
                    return
            else:
                os.read(wake_read, 4096)
                _report_exits(control)


def _serve_one(control: socket.socket, wake: tuple[int, int], namespace: dict[str, Any]) -> bool:
    """Fork one worker; False when the server has closed the socket."""
    message, ancillary, _, _ = control.recvmsg(_MESSAGE_BYTES, _FD_SPACE)
    if not message:
        return False
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        control.send(json.dumps({"error": "a fork request carries exactly one socket"}).encode())
        return True
    try:
        options = WorkerOptions(**json.loads(message))
        pid = os.fork()
    except (OSError, TypeError, ValueError) as exc:
        os.close(fds[0])
        control.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        return True
    if pid == 0:
        _run_worker(control, wake, fds[0], options, namespace)
    os.close(fds[0])
    control.send(json.dumps({"pid": pid}).encode())
    return True


def _run_worker(
    control: socket.socket,
    wake: tuple[int, int],
    fd: int,
    options: WorkerOptions,
    namespace: dict[str, Any],
) -> None:
    """In the forked child: drop the template's plumbing, then be a worker until the end."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        for end in wake:
            os.close(end)
        worker_main(socket.socket(fileno=fd), options, namespace)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not return
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _report_exits(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            control.send(json.dumps({"exit": pid, "code": code}).encode())


def _ignore(signum: int, frame: object) -> None:
    """Signals the template hears of but does not act on directly."""


if __name__ == "__main__":
    main(int(sys.argv[1]))
