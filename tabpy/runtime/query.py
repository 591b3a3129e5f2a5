"""The ``/query/<name>`` contract, run inside a worker: request bytes in, a Reply out."""

from __future__ import annotations

from typing import Any

from tabpy.errors import InvalidRequest
from tabpy.runtime.encoding import NotSerializable, encode_result
from tabpy.runtime.endpoint_cache import (
    EndpointCache,
    LoadFailed,
    call_endpoint,
    new_call_id,
    query_failed,
)
from tabpy.runtime.evaluate import decode_body
from tabpy.runtime.protocol import EndpointRef, Failure, Outcome, Reply
from tabpy.runtime.runtime_errors import describe, exception_name, shorten

__all__ = ["handle_load", "handle_query"]


def handle_query(
    body: bytes | bytearray | memoryview, endpoint: EndpointRef, cache: EndpointCache
) -> Reply:
    name, version = endpoint.name, endpoint.version
    if not body:
        return _invalid("Input body cannot be empty", 'Send {"data": [...]} or {"data": {...}}.')
    try:
        request = decode_body(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _invalid(describe(exc))
    except InvalidRequest as exc:
        return _invalid(exc.message, exc.info)
    if not isinstance(request, dict):
        return _invalid("RuntimeError : Input data must be a dictionary")
    if "data" not in request and "method" not in request:
        return _invalid('RuntimeError : Input data must be a dictionary with a key called "data"')
    data = request.get("data")
    if "method" in request:
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {"data": data, "method": request["method"]}
    elif isinstance(data, list):
        args, kwargs = tuple(data), {}
    elif isinstance(data, dict):
        args, kwargs = (), data
    else:
        error = (
            "Query parameter needs to be a dictionary or a list. "
            f"Given value is of type {type(data)}"
        )
        return _failed(Outcome.INVALID_REQUEST, name, error)
    try:
        obj = cache.load(endpoint)
    except LoadFailed as exc:
        return _failed(Outcome.FAILED, name, str(exc))
    try:
        result = call_endpoint(obj, args, kwargs)
    except MemoryError:
        raise
    except BaseException as exc:  # noqa: BLE001 - user code; SystemExit must not end the worker
        failure = Failure(exception_name(exc), shorten(str(exc)))
        return _failed(Outcome.FAILED, name, describe(exc), failure)
    try:
        response = encode_result(result)
    except NotSerializable:
        return _failed(
            Outcome.FAILED,
            name,
            f"TypeError : Result from object query is not json serializable: {result}",
        )
    # Assembled by hand so a large numeric response keeps the encoder's fast path.
    head = b'{"response": '
    tail = (
        f', "version": {version}, "model": {envelope_string(name)}, "uuid": "{new_call_id()}"}}'
    ).encode("ascii")
    return Reply.ok(head + response + tail)


def handle_load(endpoint: EndpointRef, cache: EndpointCache) -> Reply:
    """Whether the endpoint's object loads; the failure's message is the catalog's last error."""
    try:
        cache.load(endpoint)
    except LoadFailed as exc:
        return Reply.failed(Outcome.FAILED, str(exc))
    return Reply.ok(b"null")


def envelope_string(text: str) -> str:
    return encode_result(text).decode("ascii")


def _invalid(message: str, info: object = None) -> Reply:
    return Reply.failed(Outcome.INVALID_REQUEST, message, info)


def _failed(outcome: Outcome, name: str, error: str, failure: Failure | None = None) -> Reply:
    envelope = query_failed(name, error)
    return Reply.failed(outcome, envelope["message"], envelope["info"], failure)
