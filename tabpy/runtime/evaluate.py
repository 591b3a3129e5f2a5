"""The ``/evaluate`` contract, run inside a worker: request bytes in, a :class:`Reply` out.

This module alone holds the request rules (their order, the exact messages) for both kinds of
input: arguments sent as JSON (``"data"``) and, when tables are enabled on this server, a
table stored beforehand (``"dataPath"``), which the worker hands back to the server to run as a
table job. The server never parses a request body. Needs no sockets, so it is unit-tested
directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tabpy.errors import SCRIPT_ERROR, ExecutionFailed, InvalidRequest
from tabpy.runtime.encoding import encode_result
from tabpy.runtime.protocol import Failure, Outcome, Reply, TableRequest
from tabpy.runtime.runtime_errors import QUERY_FAILED_INFO, describe, exception_name, shorten
from tabpy.runtime.script_api import ScriptAPI
from tabpy.runtime.scripts import is_blank, run_script, user_line, validate_arguments

__all__ = [
    "TOO_DEEP",
    "ScriptRequest",
    "decode_body",
    "handle_evaluate",
    "parse_request",
    "script_failure",
]

TOO_DEEP = (
    "Request body is nested too deeply: JSON arrays and objects may be nested at most "
    "1024 levels deep; send the data flatter."
)
#: The key that names a stored table instead of sending ``"data"``.
DATA_PATH = "dataPath"


@dataclass(frozen=True, slots=True)
class ScriptRequest:
    """An ``/evaluate`` request with its arguments in the body."""

    script: str
    arguments: dict[str, Any]


def decode_body(body: bytes | bytearray | memoryview) -> Any:
    """Parse JSON; on failure, re-parse with the standard library for its message.

    orjson is strict where Python's parser (and thus TabPy) is lenient, for
    example about ``NaN`` tokens, so a body the standard parser accepts is used.
    orjson refuses nesting deeper than it supports; the standard parser then runs out of
    stack, which is the caller's mistake (:class:`InvalidRequest`), not a reason to crash.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(bytes(body).decode("utf-8"))
        except RecursionError:
            raise InvalidRequest(TOO_DEEP) from None


def parse_request(request: Any, tables: bool) -> ScriptRequest | TableRequest:
    """Check a decoded request in TabPy's order; raises ``InvalidRequest`` or ``ExecutionFailed``.

    ``tables``: whether ``"dataPath"`` names a stored table on this server (else it is ignored).
    """
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
    if is_blank(script):
        raise InvalidRequest("Script is empty.")
    if tables and DATA_PATH in request:
        path = request[DATA_PATH]
        if not isinstance(path, str):
            raise InvalidRequest(
                '"dataPath" must be a string: the path a table was stored under with DoPut.'
            )
        return TableRequest(script, path)  # "data" is ignored, as in TabPy
    if "data" not in request:
        # TabPy answers 500 here and its tests pin that status; we keep the
        # status but say what to send.
        raise ExecutionFailed(
            'TypeError : the request has no "data" object; send the arguments as '
            '{"_arg1": [...], ...}, or {} for a script without arguments',
        )
    return ScriptRequest(script, validate_arguments(request["data"]))


def handle_evaluate(
    body: bytes | bytearray | memoryview,
    namespace: Mapping[str, Any],
    tabpy: ScriptAPI,
    *,
    tables: bool = False,
    keep: list[Any] | None = None,
) -> Reply:
    """``keep``, if given, receives the decoded request and the script's result, so that the
    caller frees them after sending the reply: freeing a million-row request's objects takes
    about as long as sending its reply, and the client need not wait for it."""
    try:
        decoded = decode_body(body)
        if keep is not None:
            keep.append(decoded)
        request = parse_request(decoded, tables)
    except (ValueError, UnicodeDecodeError) as exc:
        return Reply.failed(Outcome.FAILED, SCRIPT_ERROR, describe(exc))
    except InvalidRequest as exc:
        return Reply.failed(Outcome.INVALID_REQUEST, exc.message, exc.info)
    except ExecutionFailed as exc:
        return Reply.failed(Outcome.FAILED, exc.message, exc.info)
    if isinstance(request, TableRequest):
        return Reply(Outcome.TABLE_REQUEST, table=request)
    return run_user_script(request.script, request.arguments, namespace, tabpy, keep)


def run_user_script(
    script: str,
    arguments: Mapping[str, Any],
    namespace: Mapping[str, Any],
    tabpy: ScriptAPI,
    keep: list[Any] | None = None,
) -> Reply:
    """Run a script on JSON arguments; its result's JSON, or the reply for its failure.

    ``keep``: as in :func:`handle_evaluate`, for the result."""
    tabpy.forget_failed_query()
    try:
        result = run_script(script, arguments, namespace, tabpy)
        if keep is not None:
            keep.append(result)
        return Reply.ok(encode_result(result))
    except MemoryError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit must not end the worker
        return script_failure(exc, tabpy)


def script_failure(exc: BaseException, tabpy: ScriptAPI) -> Reply:
    """The reply for an exception raised by a script (or by encoding its result)."""
    failure = Failure(exception_name(exc), shorten(str(exc)), user_line(exc))
    if isinstance(exc, KeyError) and exc.args == ("response",):
        # What `tabpy.query(...)['response']` raises when the query failed. TabPy's words,
        # then what went wrong.
        failed = tabpy.failed_query
        info = QUERY_FAILED_INFO if failed is None else f"{QUERY_FAILED_INFO} {failed}"
        return Reply.failed(Outcome.QUERY_UNANSWERED, SCRIPT_ERROR, info, failure)
    return Reply.failed(Outcome.FAILED, SCRIPT_ERROR, describe(exc), failure)
