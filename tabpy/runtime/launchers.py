"""Where a pool's workers come from: a warm process that forks them.

A pool asks its :class:`Launcher` for each worker process. Every pool's launcher is a
:class:`~tabpy.runtime.template.TemplateLauncher`: a template process that has already
imported the worker module and the libraries scripts use (pandas is the bulk of it), so a
replacement worker is ready in milliseconds instead of the second a cold interpreter needs.
The default pool's template runs the server's own interpreter and imports the server's own
``tabpy``; an environment's runs that environment's interpreter. Either starts without the
server's ``TABPY_*`` variables, so no worker inherits its configuration or secrets.

The protocols here let the pool (and the tests) name what a launcher and its processes do
without depending on how they do it.
"""

from __future__ import annotations

import socket
from typing import Protocol

from tabpy.runtime.worker import WorkerOptions

__all__ = ["Launcher", "WorkerProcess"]


class WorkerProcess(Protocol):
    """A worker's process as the pool handles it."""

    @property
    def pid(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None: ...

    def start(self) -> None:
        """Start it (blocking, so the pool calls it off the event loop)."""

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` for it to end and its exit code to be known."""

    def kill(self) -> None: ...


class Launcher(Protocol):
    """Where a pool's workers come from: one warm process that forks them."""

    def prepare(self) -> None:
        """Start the warm process (quick; it warms up in the background)."""

    def process(self, sock: socket.socket, options: WorkerOptions) -> WorkerProcess:
        """A worker, not started yet, that will serve ``sock``."""

    def close(self) -> None:
        """Stop what ``prepare`` started."""
