"""The ``/query/<name>`` contract, run inside a worker (SPEC 3.5)."""

from __future__ import annotations

from typing import Any

from tabpy.errors import envelope
from tabpy.runtime.encoding import NotSerializable, encode_result
from tabpy.runtime.endpoints import (
    EndpointCache,
    LoadFailed,
    call_endpoint,
    new_call_id,
    query_failed,
)
from tabpy.runtime.errors import describe
from tabpy.runtime.evaluate import Reply, decode_body


def handle_query(body: bytes | bytearray, name: str, version: int, cache: EndpointCache) -> Reply:
    if not body:
        return Reply(
            400, envelope("Input body cannot be empty", 'Send {"data": [...]} or {"data": {...}}.')
        )
    try:
        request = decode_body(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return Reply(400, envelope(describe(exc)))
    if not isinstance(request, dict):
        return Reply(400, envelope("RuntimeError : Input data must be a dictionary"))
    if "data" not in request and "method" not in request:
        return Reply(
            400, envelope('RuntimeError : Input data must be a dictionary with a key called "data"')
        )
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
        return _failed(400, name, error)
    try:
        obj = cache.load(name, version)
    except LoadFailed as exc:
        return _failed(500, name, str(exc))
    try:
        result = call_endpoint(obj, args, kwargs)
    except MemoryError:
        raise
    except BaseException as exc:  # noqa: BLE001 - user code; SystemExit must not end the worker
        return _failed(500, name, describe(exc))
    try:
        response = encode_result(result)
    except NotSerializable:
        return _failed(
            500, name, f"TypeError : Result from object query is not json serializable: {result}"
        )
    # Assembled by hand so a large numeric response keeps the encoder's fast path.
    head = b'{"response": '
    tail = (
        f', "version": {version}, "model": {envelope_string(name)}, "uuid": "{new_call_id()}"}}'
    ).encode("ascii")
    return Reply(200, head + response + tail)


def handle_load(name: str, version: int, cache: EndpointCache) -> Reply:
    try:
        cache.load(name, version)
    except LoadFailed as exc:
        return Reply(500, encode_result(str(exc)))
    return Reply(200, b"null")


def envelope_string(text: str) -> str:
    return encode_result(text).decode("ascii")


def _failed(status: int, name: str, error: str) -> Reply:
    failure = query_failed(name, error)
    return Reply(status, envelope(failure["message"], failure["info"]))
