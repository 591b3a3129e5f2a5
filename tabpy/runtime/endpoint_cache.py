"""Deployed endpoints inside a worker: their objects, loaded once from bytes the server sends.

A worker holds no registry connection. The server sends an endpoint's pickled object along
with the first job that needs it in this worker (or in answer to a script's ``tabpy.query``),
and tells the worker to forget objects no longer deployed. Objects are keyed by the SHA-256 of
their pickle, so a new version with new code is loaded afresh and an unchanged one is reused.
Unpickling can take a while for a trained model, so each object is loaded at most once; a load
that fails is remembered too, and reported again without retrying.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import cloudpickle

from tabpy.runtime.protocol import Artifact, EndpointRef
from tabpy.runtime.runtime_errors import describe

__all__ = ["EndpointCache", "LoadFailed", "call_endpoint", "new_call_id", "query_failed"]


class LoadFailed(Exception):
    """An endpoint version could not be turned into a callable object."""


class _Failure:
    """A remembered load failure (a class of its own: a deployed object may be anything)."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


class EndpointCache:
    def __init__(self) -> None:
        self._objects: dict[str | None, Any] = {}

    def __len__(self) -> int:
        return len(self._objects)

    def install(self, artifact: Artifact, data: bytes | bytearray | memoryview | None) -> None:
        """Load an object the server sent, or remember why it could not send one."""
        if artifact.missing is not None:
            self._objects[artifact.sha256] = _Failure(
                f"Load failed: LookupError : {artifact.missing}"
            )
            return
        if not data:
            return  # the server knows this worker holds it already
        try:
            self._objects[artifact.sha256] = cloudpickle.loads(data)
        except MemoryError:
            raise
        except BaseException as exc:  # noqa: BLE001 - unpickling runs arbitrary code
            self._objects[artifact.sha256] = _Failure(f"Load failed: {describe(exc)}")

    def forget(self, artifacts: Iterable[str]) -> None:
        for sha256 in artifacts:
            self._objects.pop(sha256, None)

    def load(self, endpoint: EndpointRef) -> Any:
        """The object ``endpoint`` runs; raises ``LoadFailed`` with TabPy's words."""
        if endpoint.type != "model":
            raise LoadFailed(f"Load failed: Unknown object type: {endpoint.type}")
        if endpoint.artifact not in self._objects:
            # The server sends every object before the job that needs it; this is a bug.
            raise LoadFailed(
                f"Load failed: the server sent no object for {endpoint.name} "
                f"version {endpoint.version}"
            )
        loaded = self._objects[endpoint.artifact]
        if isinstance(loaded, _Failure):
            raise LoadFailed(loaded.error)
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
