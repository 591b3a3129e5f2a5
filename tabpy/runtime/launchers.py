"""Where a pool's workers come from: a warm process that forks them.

A pool asks its :class:`Launcher` for each worker process. The default pool's launcher is
multiprocessing's *fork server* (:class:`ForkServerLauncher`), which has already imported the
worker module (and with it pandas), so a replacement is ready in milliseconds instead of the
second a cold interpreter needs. It starts with the ``TABPY_*`` variables removed from its
environment, so no worker inherits the server's configuration or secrets. A pool for another
Python environment uses a template in that environment's interpreter instead
(:class:`~tabpy.runtime.template.TemplateLauncher`), which gives the same guarantees.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import socket
import sys
from collections.abc import Iterator
from multiprocessing.context import BaseContext
from typing import Protocol, cast

from tabpy.runtime.namespace import OPTIONAL_MODULES
from tabpy.runtime.worker import ENVIRONMENT_PREFIX, WorkerOptions, worker_main

__all__ = [
    "PRELOADED_MODULES",
    "ForkServerLauncher",
    "Launcher",
    "WorkerProcess",
    "preload_modules",
]

#: The last one freezes what the others created, so that forked workers keep sharing it.
PRELOADED_MODULES = ("tabpy.runtime.worker", *OPTIONAL_MODULES, "tabpy.runtime.prefork")


class WorkerProcess(Protocol):
    """A worker's process as the pool handles it (a ``multiprocessing`` Process fits)."""

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
        """Stop what ``prepare`` started that is this pool's alone."""


class ForkServerLauncher:
    """Workers in the server's own interpreter, from multiprocessing's fork server.

    There is one fork server per process, started once without the ``TABPY_*`` variables and
    kept for the life of the server.
    """

    def __init__(self) -> None:
        self._context: BaseContext = multiprocessing.get_context("forkserver")

    def prepare(self) -> None:
        # The fork server imports these once; every worker forks with them loaded.
        preload = preload_modules(sys.modules.get("__main__"))
        self._context.set_forkserver_preload(preload)  # type: ignore[attr-defined]
        with _without_server_settings():
            multiprocessing.forkserver.ensure_running()

    def process(self, sock: socket.socket, options: WorkerOptions) -> WorkerProcess:
        return cast(
            WorkerProcess,
            self._context.Process(  # type: ignore[attr-defined]
                target=worker_main, args=(sock, options), daemon=True, name="tabpy-worker"
            ),
        )

    def close(self) -> None:
        pass  # the fork server is the process's, not the pool's


def preload_modules(main: object) -> list[str]:
    """What the fork server imports before forking workers, given the server's ``__main__``.

    multiprocessing runs the parent's main module again in every child it starts (as
    ``__mp_main__``, so that objects defined there can be unpickled): for the server that
    imports the configuration and logging code in each worker, about 3 MB of private memory
    per worker. Imported once in the fork server instead, it is shared, and a worker only
    re-runs the main module's own lines. A main run as a module (``python -m
    tabpy.cli.server``) is preloaded by name; for one run from a file (the ``tabpy`` console
    script, whose lines import ``main`` from ``tabpy.cli.server``) the modules its functions
    come from are preloaded. An interactive or ``-c`` main has nothing to import.
    """
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name != "__main__" and not name.endswith(".__main__"):
        mains = [name]
    elif spec is None and isinstance(getattr(main, "__file__", None), str):
        mains = sorted(
            {
                module
                for value in vars(main).values()
                if callable(value)
                and isinstance(module := getattr(value, "__module__", None), str)
                and module not in ("__main__", "builtins")
                and module in sys.modules
            }
        )
    else:
        mains = []
    *modules, freeze = PRELOADED_MODULES
    return [*modules, *[m for m in mains if m not in modules], freeze]


@contextlib.contextmanager
def _without_server_settings() -> Iterator[None]:
    """Remove ``TABPY_*`` variables while the fork server starts, so it never holds them.

    Start-up runs before the server serves anything, so nothing else reads the environment
    meanwhile; the variables are put back for the server's own use.
    """
    removed = {k: v for k, v in os.environ.items() if k.startswith(ENVIRONMENT_PREFIX)}
    for name in removed:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(removed)
