"""Several server processes on one port (``TABPY_ACCEPTORS``), and the supervisor that keeps them.

One event loop serves HTTP on one core, whatever the machine has. With ``TABPY_ACCEPTORS = N``
the command's process becomes a small supervisor that forks ``N`` acceptors. Each acceptor is
the whole server (HTTP, authentication, metrics, its own worker pool with its share of
``TABPY_WORKERS``) listening on its own ``SO_REUSEPORT`` socket bound to the same address and
port, so the kernel spreads new connections over them. They share the registry as the members
of a fleet on one host do: a change made through one is mirrored at once by that one and
within a revision poll by the others (:mod:`tabpy.runtime.catalog`). Why this design rather
than acceptors handing their jobs to one shared pool is in ``docs/capacity.md``: in short, a
request then crosses no extra process boundary, and an acceptor that dies takes only its own
connections with it.

The supervisor:

* binds the address first, with ``SO_REUSEPORT`` but without listening, so that the port is
  checked (and chosen, when ``TABPY_PORT = 0``) before anything starts, and stays reserved;
* starts acceptor 0 alone and waits until it serves, so that a first start creates or migrates
  the registry once, then starts the others; an acceptor that fails during this start stops
  them all, and the command exits with its code;
* afterwards restarts an acceptor that exits on its own (a crash, ``kill -9``), with a pause
  that grows while restarts keep failing;
* passes SIGTERM, SIGINT and SIGHUP on to every acceptor (each drains and stops as a lone
  server does) and exits once all have stopped. Each acceptor runs in a process group of its
  own, so that a terminal's Ctrl+C reaches it once, through the supervisor, and asks Linux to
  stop it if the supervisor dies.

With ``TABPY_ACCEPTORS = 1`` none of this runs: the command's process is the server, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

from tabpy.config import Settings

__all__ = ["Supervisor", "acceptor_settings", "worker_share"]

logger = logging.getLogger("tabpy.server")

#: Runs one acceptor in a forked child: (its settings, its listeners, call when serving) -> code.
RunAcceptor = Callable[[Settings, list[socket.socket], Callable[[], None]], int]
#: Binds sockets on (host, port) with SO_REUSEPORT, not listening.
Bind = Callable[[str, int], list[socket.socket]]

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_FIRST_PAUSE, _LONGEST_PAUSE = 0.5, 30.0
#: An acceptor that served this long before dying is restarted without a pause.
_STABLE_SECONDS = 10.0


def worker_share(workers: int, acceptors: int, index: int) -> int:
    """Acceptor ``index``'s part of ``workers``: as even as possible, at least one."""
    return max(1, workers // acceptors + (1 if index < workers % acceptors else 0))


def acceptor_settings(settings: Settings, index: int) -> Settings:
    """The settings acceptor ``index`` runs with: its workers, and its own instance id."""
    return dataclasses.replace(
        settings,
        workers=worker_share(settings.workers, settings.acceptors, index),
        instance_id=f"{settings.instance_id}/{index}",
    )


@dataclasses.dataclass
class _Slot:
    index: int
    pid: int = 0
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Forks and keeps ``settings.acceptors`` acceptors; :meth:`run` returns the exit code."""

    def __init__(
        self,
        settings: Settings,
        reservation: list[socket.socket],
        bind: Bind,
        run_acceptor: RunAcceptor,
    ) -> None:
        self.settings = settings
        self.reservation = reservation
        self.bind = bind
        self.run_acceptor = run_acceptor
        self.port = int(reservation[0].getsockname()[1])
        self.slots = [_Slot(index) for index in range(settings.acceptors)]
        self.stopping = False
        self._ready_read, self._ready_write = os.pipe()
        # Restarted acceptors write too, and nobody reads then: a full pipe must not block one.
        os.set_blocking(self._ready_write, False)
        self._supervisor = os.getpid()

    # --- the supervisor's side ---------------------------------------------------------------

    def run(self) -> int:
        previous = {signum: signal.signal(signum, self._on_signal) for signum in _FORWARDED}
        try:
            code = self._start_all()
            if code is not None:
                self._stop_all()
                self._reap_all()
                return code
            logger.info(
                "%d acceptors serving on port %d (pids %s)",
                len(self.slots),
                self.port,
                ", ".join(str(slot.pid) for slot in self.slots),
            )
            self._keep()
            return 0
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(self._ready_read)
            os.close(self._ready_write)

    def _start_all(self) -> int | None:
        """None once every acceptor serves; else the exit code of one that could not start."""
        for slot in self.slots:
            self._fork(slot)
            code = self._wait_serving(slot)
            if code is not None:
                return code
        return None

    def _wait_serving(self, slot: _Slot) -> int | None:
        while not self.stopping:
            readable, _, _ = select.select([self._ready_read], [], [], 0.1)
            # Acceptors start one at a time here, so a byte comes from this one.
            if readable and os.read(self._ready_read, 64):
                return None
            pid, status = os.waitpid(slot.pid, os.WNOHANG)
            if pid:
                slot.pid = 0
                code = os.waitstatus_to_exitcode(status)
                logger.error("Acceptor %d exited with %d during start-up", slot.index, code)
                return code if code > 0 else 1
        return 0

    def _keep(self) -> None:
        """Reap and restart acceptors until a signal stops them and all have exited."""
        while any(slot.pid for slot in self.slots):
            self._reap(block=not self._restarts_due())
            if not self.stopping:
                self._restart_due()

    def _restarts_due(self) -> bool:
        return any(slot.restart_at is not None for slot in self.slots)

    def _reap(self, block: bool) -> None:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            time.sleep(0.05)
            return
        slot = next((s for s in self.slots if s.pid == pid), None)
        if slot is None:
            return
        slot.pid = 0
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            logger.info("Acceptor %d stopped", slot.index)
            return
        served = time.monotonic() - slot.started_at
        slot.failures = 0 if served > _STABLE_SECONDS else slot.failures + 1
        pause = 0.0 if slot.failures == 0 else min(_FIRST_PAUSE * 2**slot.failures, _LONGEST_PAUSE)
        how = f"signal {-code}" if code < 0 else f"code {code}"
        logger.error(
            "Acceptor %d (pid %d) exited with %s; restarting it in %g s",
            slot.index,
            pid,
            how,
            pause,
        )
        slot.restart_at = time.monotonic() + pause

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                slot.restart_at = None
                self._fork(slot)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGHUP:
            self.stopping = True
            for slot in self.slots:
                slot.restart_at = None
        self._signal_all(signum)

    def _stop_all(self) -> None:
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):  # exited, not yet reaped
                    os.kill(slot.pid, signum)

    def _reap_all(self) -> None:
        for slot in self.slots:
            if slot.pid:
                os.waitpid(slot.pid, 0)
                slot.pid = 0

    # --- the acceptor's side -----------------------------------------------------------------

    def _fork(self, slot: _Slot) -> None:
        pid = os.fork()
        if pid:
            slot.pid, slot.started_at = pid, time.monotonic()
            if self.stopping:  # a signal came while forking: this one did not get it
                os.kill(pid, signal.SIGTERM)
            return
        code = 1
        try:
            code = self._become_acceptor(slot.index)
        except BaseException:  # noqa: BLE001 - a child must never return into the supervisor
            logger.exception("Acceptor %d failed", slot.index)
        finally:
            logging.shutdown()
            os._exit(code)

    def _become_acceptor(self, index: int) -> int:
        # A process group of its own: Ctrl+C in a terminal signals the foreground group, and an
        # acceptor that got SIGINT from there and again from the supervisor would stop at once,
        # cutting off requests in flight, instead of stopping gracefully.
        os.setpgid(0, 0)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        # Until the server takes SIGHUP over (reloading the password file), a forwarded one must
        # not end an acceptor that is still starting.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        _stop_with_parent()
        if os.getppid() != self._supervisor:  # it died before the request above took effect
            return 1
        os.close(self._ready_read)
        for sock in self.reservation:
            sock.close()
        settings = acceptor_settings(self.settings, index)
        listeners = self.bind(settings.bind_address, self.port)
        ready = self._ready_write

        def serving() -> None:
            with contextlib.suppress(BlockingIOError):
                os.write(ready, b"!")

        return self.run_acceptor(settings, listeners, serving)


def _stop_with_parent() -> None:
    """Ask Linux for SIGTERM when the supervisor dies (``kill -9``), so that no acceptor keeps
    serving without one. Elsewhere, or if the call fails, an orphan runs until stopped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
