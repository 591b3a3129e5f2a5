"""The /evaluate request and response rules, without a server."""

from __future__ import annotations

import json

import pytest

from tabpy.runtime.endpoints import EndpointCache
from tabpy.runtime.evaluate import QUERY_FAILED_INFO, handle_evaluate
from tabpy.runtime.namespace import build_namespace
from tabpy.runtime.script_api import ScriptAPI
from tests.unit.fakes import FakeRegistry

NAMESPACE = build_namespace()
CACHE = EndpointCache(lambda: FakeRegistry({"double": lambda x, factor=2: factor * x}))
CACHE.observe(1)
API = ScriptAPI(CACHE)


def evaluate(body: object) -> tuple[int, object]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = handle_evaluate(raw, NAMESPACE, API)
    return reply.status, json.loads(reply.body)


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
        ({"script": "", "data": {}}, 500, "Error processing script", "IndentationError : "),
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


def test_query_of_missing_endpoint_gives_tabpy_404() -> None:
    status, body = evaluate({"script": "return tabpy.query('nope', 1)['response']", "data": {}})
    assert (status, body) == (
        404,
        {"message": "Error processing script", "info": QUERY_FAILED_INFO},
    )


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
