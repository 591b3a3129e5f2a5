"""Deployed endpoints inside a worker: loading, caching and calling them.

A worker loads each endpoint version at most once (unpickling can take a
while for a trained model) and keeps only current versions.  It reads the
registry directly, so artifacts never travel through the server process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import cloudpickle

from tabpy.registry.endpoint import Endpoint
from tabpy.runtime.errors import describe


class LoadFailed(Exception):
    """An endpoint version could not be turned into a callable object."""


class RegistryUnavailable(Exception):
    """The registry could not be read; the job cannot know which endpoints exist."""


class EndpointCache:
    """Which endpoints exist, and their loaded objects, as seen from one worker.

    Every job tells the worker the registry revision the server has seen
    (``observe``); the worker re-reads the registry only when an endpoint is
    actually needed and that revision changed, so scripts that never call
    ``tabpy.query`` never touch the database.
    """

    def __init__(self, open_registry: Callable[[], Any]) -> None:
        self._open_registry = open_registry
        self._registry: Any = None
        self._revision = -1
        self._wanted = 0
        self._current: dict[str, Endpoint] = {}
        self._objects: dict[tuple[str, int, str | None], Any] = {}

    def observe(self, revision: int) -> None:
        self._wanted = revision

    def _refresh(self) -> None:
        if self._wanted == self._revision:
            return
        try:
            _, self._current = self.registry.snapshot()
        except Exception as exc:  # noqa: BLE001 - any driver error means the same here
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from None
        self._revision = self._wanted
        live = {(e.name, e.version, e.artifact) for e in self._current.values()}
        for key in [key for key in self._objects if key not in live]:
            del self._objects[key]

    @property
    def registry(self) -> Any:
        if self._registry is None:
            self._registry = self._open_registry()
        return self._registry

    def current_version(self, name: str) -> int | None:
        self._refresh()
        endpoint = self._current.get(name)
        return None if endpoint is None else endpoint.version

    def load(self, name: str, version: int) -> Any:
        self._refresh()
        endpoint = self._current.get(name)
        if endpoint is not None and endpoint.version != version:
            endpoint = None  # an older or newer version than the one this worker knows
        key = (name, version, endpoint.artifact if endpoint is not None else None)
        loaded = self._objects.get(key)
        if loaded is not None:
            return loaded
        if endpoint is not None and endpoint.type != "model":
            raise LoadFailed(f"Load failed: Unknown object type: {endpoint.type}")
        try:
            loaded = cloudpickle.loads(self.registry.artifact_of(name, version))
        except MemoryError:
            raise
        except BaseException as exc:  # noqa: BLE001 - unpickling runs arbitrary code
            raise LoadFailed(f"Load failed: {describe(exc)}") from None
        self._objects[key] = loaded
        return loaded


def call_endpoint(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    query = getattr(obj, "query", None)
    if callable(query):
        return query(*args, **kwargs)
    return obj(*args, **kwargs)


def query_failed(name: str, error: str) -> dict[str, Any]:
    """TabPy's error envelope for a failed endpoint call."""
    return {
        "message": f"Error querying function '{name}'",
        "info": {"uri": name, "error": error, "type": "QueryFailed"},
    }


def unknown_endpoint(name: str) -> dict[str, Any]:
    return {"message": "UnknownURI", "info": f"Endpoint '{name}' does not exist"}


def new_call_id() -> str:
    return str(uuid.uuid4())
