"""The ``tabpy`` object that scripts receive as their first argument."""

from __future__ import annotations

from typing import Any

from tabpy.runtime.endpoints import (
    EndpointCache,
    LoadFailed,
    call_endpoint,
    new_call_id,
    query_failed,
    unknown_endpoint,
)
from tabpy.runtime.errors import describe


class ScriptAPI:
    """Gives scripts ``tabpy.query(name, *args, **kwargs)``.

    The endpoint runs right here in the worker, not through a loopback HTTP
    request as in TabPy, and positional and keyword arguments are both passed
    (TabPy drops the keywords when there are positional ones).  The reply has
    TabPy's shape, error envelopes included, because scripts index it with
    ``['response']``.
    """

    def __init__(self, endpoints: EndpointCache) -> None:
        self._endpoints = endpoints

    def query(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        version = self._endpoints.current_version(name)
        if version is None:
            return unknown_endpoint(name)
        try:
            obj = self._endpoints.load(name, version)
        except LoadFailed as exc:
            return query_failed(name, str(exc))
        try:
            response = call_endpoint(obj, args, kwargs)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the script decides what to do with it
            return query_failed(name, describe(exc))
        return {"response": response, "version": version, "model": name, "uuid": new_call_id()}
