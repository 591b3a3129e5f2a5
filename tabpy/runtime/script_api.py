"""The ``tabpy`` object that scripts receive as their first argument."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import unquote

from tabpy.runtime.encoding import NotSerializable, encode_result
from tabpy.runtime.endpoint_cache import (
    EndpointCache,
    LoadFailed,
    call_endpoint,
    new_call_id,
    query_failed,
    unknown_endpoint,
)
from tabpy.runtime.protocol import Elsewhere, EndpointRef, Refused
from tabpy.runtime.runtime_errors import describe

__all__ = ["EndpointSource", "ScriptAPI"]


class EndpointSource(Protocol):
    """Where a worker learns which version of an endpoint is current: the server."""

    def ask(self, name: str) -> EndpointRef | Refused | Elsewhere | None:
        """The current version of ``name`` (its object then in the cache), None if it is not
        deployed, why the script's caller may not query it, or that it runs in another
        Python environment (then :meth:`call` runs it there)."""

    def call(self, name: str, arguments: bytes) -> Any:
        """Run ``name`` on ``arguments`` (``{"data": ...}``) in its environment's pool; the
        decoded result (TabPy's reply shape, or an error envelope)."""


class ScriptAPI:
    """Gives scripts ``tabpy.query(name, *args, **kwargs)``.

    The endpoint runs right here in the worker, not through a loopback HTTP request as in
    TabPy: the worker asks the server which version is current (and receives its object if it
    does not hold it yet) over its own channel. Positional and keyword arguments are both passed
    (TabPy drops the keywords when there are positional ones). The reply has TabPy's shape,
    error envelopes included, because scripts index it with ``['response']``. As in TabPy, which
    puts the name in a URL path, a percent-encoded name means the decoded one
    (``'Sentiment%20Analysis'``); endpoint names cannot contain ``%`` themselves.

    A script has its caller's rights: an endpoint its caller could not query over HTTP is
    refused here too, and the reply is the same ``403`` envelope (``message`` naming the missing
    role or the endpoint's callers), as TabPy's loopback call would return it.
    """

    def __init__(self, endpoints: EndpointCache, source: EndpointSource) -> None:
        self._endpoints = endpoints
        self._source = source
        #: What went wrong in the script's last failed query, in words for its caller.
        self.failed_query: str | None = None

    def forget_failed_query(self) -> None:
        """Called before each script, so one script never explains another's failure."""
        self.failed_query = None

    def query(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        name = unquote(name)
        endpoint = self._source.ask(name)
        if endpoint is None:
            self.failed_query = f"The server said: there is no endpoint named {name!r}."
            return unknown_endpoint(name)
        if isinstance(endpoint, Refused):
            self.failed_query = f"The server refused: {endpoint.message}"
            return {"message": endpoint.message, "info": endpoint.info}
        if isinstance(endpoint, Elsewhere):
            return self._call_elsewhere(name, args, kwargs)
        try:
            obj = self._endpoints.load(endpoint)
        except LoadFailed as exc:
            return self._failed(name, str(exc))
        try:
            response = call_endpoint(obj, args, kwargs)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the script decides what to do with it
            return self._failed(name, describe(exc))
        return {
            "response": response,
            "version": endpoint.version,
            "model": name,
            "uuid": new_call_id(),
        }

    def _call_elsewhere(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The endpoint runs in another environment: its arguments travel as JSON, as they
        would in a ``/query`` request, so they take its form (positional or keyword)."""
        if args and kwargs:
            return self._failed(
                name,
                "TypeError : this endpoint runs in another Python environment, so a call "
                "passes either positional or keyword arguments, not both",
            )
        try:
            data = encode_result(list(args) if args or not kwargs else kwargs)
        except NotSerializable as exc:
            return self._failed(
                name,
                f"TypeError : this endpoint runs in another Python environment and its "
                f"arguments must be JSON serializable ({exc})",
            )
        result = self._source.call(name, b'{"data": ' + data + b"}")
        if not isinstance(result, dict) or "response" not in result:
            info = result.get("info") if isinstance(result, dict) else None
            error = info.get("error") if isinstance(info, dict) else None
            message = result.get("message") if isinstance(result, dict) else None
            self.failed_query = f"The endpoint said: {error or message or result}"
        return result if isinstance(result, dict) else {"response": result}

    def _failed(self, name: str, error: str) -> dict[str, Any]:
        self.failed_query = f"The endpoint said: {error}"
        return query_failed(name, error)
