"""The ``tabpy`` object that scripts receive as their first argument."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class ScriptAPI:
    """Gives scripts ``tabpy.query(name, *args, **kwargs)``.

    Endpoints are called inside the worker itself, not through a loopback HTTP
    request as in TabPy.  The reply has TabPy's shape, including its error
    envelope for an unknown endpoint, because scripts index it with
    ``['response']``.
    """

    def __init__(self, endpoints: Mapping[str, Callable[..., dict[str, Any]]]) -> None:
        self._endpoints = endpoints

    def query(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        call = self._endpoints.get(name)
        if call is None:
            return {"message": "UnknownURI", "info": f"Endpoint '{name}' does not exist"}
        return call(*args, **kwargs)
