"""The /evaluate request and response rules, without a server.

The worker's reply carries an outcome; ``as_http`` maps it the way the server does (the
outcome to a ``tabpy.errors`` exception, that exception to TabPy's status and envelope), so
these tests pin the bytes a client receives.
"""

from __future__ import annotations

import json

import pytest

from tabpy.runtime.endpoint_cache import EndpointCache
from tabpy.runtime.evaluate import handle_evaluate
from tabpy.runtime.namespace import build_namespace
from tabpy.runtime.protocol import Failure, Outcome, Reply, TableRequest
from tabpy.runtime.runtime_errors import QUERY_FAILED_INFO
from tabpy.runtime.script_api import ScriptAPI
from tests.unit.fakes import FakeServer, as_http

NAMESPACE = build_namespace()
CACHE = EndpointCache()
API = ScriptAPI(CACHE, FakeServer(CACHE, {"double": lambda x, factor=2: factor * x}))


def evaluate(body: object) -> tuple[int, object]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, content = as_http(handle_evaluate(raw, NAMESPACE, API))
    return status, json.loads(content)


def table_reply(body: bytes) -> Reply:
    return handle_evaluate(body, NAMESPACE, API, tables=True)


def test_success() -> None:
    status, body = evaluate(
        {
            "script": "return [x + y for x, y in zip(_arg1, _arg2)]",
            "data": {"_arg1": [1, 2, 3], "_arg2": [3, -1, 5]},
        }
    )
    assert (status, body) == (200, [4, 1, 8])


@pytest.mark.parametrize(
    ("request_body", "status", "message", "info_prefix"),
    [
        (b"", 500, "Error processing script", "JSONDecodeError : Expecting value"),
        (b"{nope", 500, "Error processing script", "JSONDecodeError : "),
        (b"\x1f\x8b\x08", 500, "Error processing script", "UnicodeDecodeError : "),
        ([1, 2], 400, "Script is empty.", ""),
        ({"data": {}}, 400, "Script is empty.", ""),
        ({"script": "return 1"}, 500, "Error processing script", "TypeError : "),
        (
            {"script": "return 1", "data": [1]},
            400,
            "Script parameters need to be provided as a dictionary.",
            "",
        ),
        (
            {"script": "return 1", "data": {"_arg2": 1}},
            400,
            "Variables names should follow the format _arg1, _arg2, _argN",
            "",
        ),
        ({"script": "return (", "data": {}}, 500, "Error processing script", "SyntaxError : "),
        ({"script": "", "data": {}}, 400, "Script is empty.", ""),
        ({"script": " \n\t", "data": {}}, 400, "Script is empty.", ""),
        ({"script": "if 1:", "data": {}}, 500, "Error processing script", "IndentationError : "),
        (
            {"script": "raise ValueError('boom')", "data": {}},
            500,
            "Error processing script",
            "ValueError : boom",
        ),
        (
            {"script": "import sys\nsys.exit(3)", "data": {}},
            500,
            "Error processing script",
            "SystemExit : 3",
        ),
        (
            {"script": "raise KeyboardInterrupt", "data": {}},
            500,
            "Error processing script",
            "KeyboardInterrupt : ",
        ),
        (
            {"script": "return object()", "data": {}},
            500,
            "Error processing script",
            "TypeError : Object of type object is not JSON serializable",
        ),
    ],
)
def test_errors(request_body: object, status: int, message: str, info_prefix: str) -> None:
    got_status, body = evaluate(request_body)
    assert got_status == status
    assert body["message"] == message
    if info_prefix:
        assert body["info"].startswith(info_prefix)
    else:
        assert body["info"] == {}


def test_query_of_missing_endpoint_gives_tabpy_404_and_says_why() -> None:
    status, body = evaluate({"script": "return tabpy.query('nope', 1)['response']", "data": {}})
    explained = f"{QUERY_FAILED_INFO} The server said: there is no endpoint named 'nope'."
    assert (status, body) == (404, {"message": "Error processing script", "info": explained})


def test_failed_query_says_what_the_endpoint_raised() -> None:
    script = "return tabpy.query('double', None)['response']"
    status, body = evaluate({"script": script, "data": {}})
    assert status == 404
    assert body["info"] == (
        f"{QUERY_FAILED_INFO} The endpoint said: TypeError : "
        "unsupported operand type(s) for *: 'int' and 'NoneType'"
    )
    # The explanation belongs to the script that failed, not to the next one.
    status, body = evaluate({"script": "return {}['response']", "data": {}})
    assert (status, body["info"]) == (404, QUERY_FAILED_INFO)


def test_failures_carry_what_the_log_needs_and_no_data() -> None:
    body = json.dumps({"script": "x = 1\nraise ValueError('bad')", "data": {}}).encode()
    reply = handle_evaluate(body, NAMESPACE, API)
    assert reply.failure == Failure("ValueError", "bad", 2)
    syntax = handle_evaluate(b'{"script": "x = 1\\ny = (", "data": {}}', NAMESPACE, API)
    assert syntax.failure == Failure("SyntaxError", "'(' was never closed (<string>, line 2)", 2)
    assert syntax.info == "SyntaxError : '(' was never closed (<string>, line 2)"


def test_query_calls_endpoint_in_process() -> None:
    status, body = evaluate(
        {"script": "return tabpy.query('double', _arg1)['response']", "data": {"_arg1": 21}}
    )
    assert (status, body) == (200, 42)


def test_lenient_json_is_accepted_like_tabpy() -> None:
    status, body = evaluate(b'{"script": "return _arg1", "data": {"_arg1": [NaN, 1]}}')
    assert (status, body) == (200, [None, 1])


def test_pre_imported_names() -> None:
    status, body = evaluate(
        {"script": "return [pandas.__name__, json.__name__, uuid.__name__]", "data": {}}
    )
    assert (status, body) == (200, ["pandas", "json", "uuid"])


# --- table requests (dataPath), when the server has tables -------------------------------------


def test_data_path_is_a_table_request_and_data_is_ignored() -> None:
    reply = table_reply(b'{"script": "return _arg1", "dataPath": "p-1", "data": {"_arg1": 1}}')
    assert reply.outcome is Outcome.TABLE_REQUEST
    assert reply.table == TableRequest("return _arg1", "p-1")


def test_escaped_data_path_key_is_recognised() -> None:
    """The key is found by parsing, so a JSON escape in it changes nothing."""
    reply = table_reply(b'{"script": "return 1", "d\\u0061taPath": "p-2"}')
    assert reply.table == TableRequest("return 1", "p-2")


@pytest.mark.parametrize(
    ("body", "status", "message", "info_prefix"),
    [
        (b'{"dataPath": "p"}', 400, "Script is empty.", ""),
        (b'{"script": 1, "dataPath": "p"}', 500, "Error processing script", "TypeError : "),
        (
            b'{"script": "return 1", "dataPath": 5}',
            400,
            '"dataPath" must be a string: the path a table was stored under with DoPut.',
            "",
        ),
    ],
)
def test_table_request_errors(body: bytes, status: int, message: str, info_prefix: str) -> None:
    got_status, content = as_http(table_reply(body))
    parsed = json.loads(content)
    assert (got_status, parsed["message"]) == (status, message)
    assert parsed["info"].startswith(info_prefix) if info_prefix else parsed["info"] == {}


def test_data_path_is_ignored_without_tables() -> None:
    status, body = evaluate({"script": "return 1", "dataPath": "p"})
    assert status == 500
    assert 'no "data" object' in body["info"]
    assert evaluate({"script": "return 2", "dataPath": "p", "data": {}}) == (200, 2)
