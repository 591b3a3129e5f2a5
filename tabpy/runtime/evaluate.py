"""The ``/evaluate`` contract, run inside a worker: bytes in, status and bytes out.

This module holds the request and response rules of SPEC 3.4 (validation order,
status codes, exact messages).  It needs no sockets, so it is unit-tested
directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from tabpy.errors import SCRIPT_ERROR, ExecutionFailed, InvalidRequest, envelope
from tabpy.runtime.encoding import encode_result
from tabpy.runtime.errors import describe
from tabpy.runtime.protocol import ReplyFlag
from tabpy.runtime.scripts import run_script, validate_arguments

ERROR_MESSAGE = SCRIPT_ERROR
QUERY_FAILED_INFO = (
    "The endpoint you're trying to query did not respond. Please make sure the endpoint "
    "exists and the correct set of arguments are provided."
)


class Reply:
    """What the worker sends back: an HTTP status and the exact body."""

    __slots__ = ("status", "body", "flags")

    def __init__(self, status: int, body: bytes, flags: ReplyFlag = ReplyFlag.NONE) -> None:
        self.status = status
        self.body = body
        self.flags = flags

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:80]!r})"


def decode_body(body: bytes | bytearray | memoryview) -> Any:
    """Parse JSON; on failure, re-parse with the standard library for its message.

    orjson is strict where Python's parser (and thus TabPy) is lenient, for
    example about ``NaN`` tokens, so a body the standard parser accepts is used.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(bytes(body).decode("utf-8"))


def handle_evaluate(
    body: bytes | bytearray | memoryview, namespace: Mapping[str, Any], tabpy: object
) -> Reply:
    try:
        request = decode_body(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return Reply(500, envelope(ERROR_MESSAGE, describe(exc)))
    try:
        script, arguments = _parse_request(request)
    except InvalidRequest as exc:
        return Reply(400, envelope(exc.message, exc.info))
    except ExecutionFailed as exc:
        return Reply(500, envelope(exc.message, exc.info))
    try:
        result = run_script(script, arguments, namespace, tabpy)
        return Reply(200, encode_result(result))
    except MemoryError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit must not end the worker
        return script_failure(exc)


def script_failure(exc: BaseException) -> Reply:
    """The reply for an exception raised by a script (or by encoding its result)."""
    if isinstance(exc, KeyError) and exc.args == ("response",):
        # What `tabpy.query(...)['response']` raises when the query failed.
        return Reply(404, envelope(ERROR_MESSAGE, QUERY_FAILED_INFO))
    return Reply(500, envelope(ERROR_MESSAGE, describe(exc)))


def _parse_request(request: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(request, list) or (isinstance(request, dict) and "script" not in request):
        raise InvalidRequest("Script is empty.")
    if not isinstance(request, dict):
        raise ExecutionFailed(
            f"TypeError : the request body must be a JSON object, not {type(request).__name__}",
        )
    script = request["script"]
    if not isinstance(script, str):
        raise ExecutionFailed(
            f'TypeError : "script" must be a string, not {type(script).__name__}',
        )
    if "data" not in request:
        # TabPy answers 500 here and its tests pin that status; we keep the
        # status but say what to send.
        raise ExecutionFailed(
            'TypeError : the request has no "data" object; send the arguments as '
            '{"_arg1": [...], ...}, or {} for a script without arguments',
        )
    return script, validate_arguments(request["data"])
