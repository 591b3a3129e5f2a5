"""Jobs that feature packages plug into the worker, found by name, imported on first use.

A feature package that needs its own kind of work done in a worker (Arrow's table jobs, for
instance) ships a worker module with a ``JOB_HANDLERS`` mapping from handler name to function.
The app wiring tells the pool which module serves which name (``PoolOptions.extensions``); a
worker imports that module only when a job for one of its names first arrives, so the core
never imports a feature package and a worker that never sees such a job never pays for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tabpy.runtime.protocol import Reply
from tabpy.runtime.script_api import ScriptAPI

__all__ = ["JobContext", "JobHandler", "JobHandlers", "UnknownHandler"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job handler may use to run user code, as the built-in jobs do."""

    #: The names scripts see without importing them (copied for every run).
    namespace: Mapping[str, Any]
    #: The ``tabpy`` object scripts receive as their first argument.
    tabpy: ScriptAPI


#: ``(params, context, body)``: the job's parameters and the bytes sent with it.
JobHandler = Callable[[dict[str, Any], JobContext, bytearray | memoryview], Reply]


class UnknownHandler(LookupError):
    """No module serves this handler name, or the module does not define it."""


class JobHandlers:
    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)
        self._handlers: dict[str, JobHandler] = {}

    def get(self, name: str) -> JobHandler:
        handler = self._handlers.get(name)
        if handler is not None:
            return handler
        module_name = self._modules.get(name)
        if module_name is None:
            raise UnknownHandler(f"no module serves job handler {name!r}")
        offered: Mapping[str, JobHandler] = getattr(
            importlib.import_module(module_name), "JOB_HANDLERS", {}
        )
        if name not in offered:
            raise UnknownHandler(f"{module_name} defines no job handler {name!r}")
        self._handlers.update(offered)
        return offered[name]
