"""The /query request and response rules, without a server (see test_evaluate_contract)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import cloudpickle
import pytest

from tabpy.runtime.endpoint_cache import EndpointCache
from tabpy.runtime.protocol import Artifact, EndpointRef, Outcome
from tabpy.runtime.query import handle_load, handle_query
from tests.unit.fakes import as_http


def install(cache: EndpointCache, name: str, obj: Any, kind: str = "model") -> EndpointRef:
    data = cloudpickle.dumps(obj)
    sha256 = hashlib.sha256(data).hexdigest()
    cache.install(Artifact(sha256, data), data)
    return EndpointRef(name, 3, kind, sha256)


def query(endpoint: EndpointRef, cache: EndpointCache, body: bytes) -> tuple[int, Any]:
    status, content = as_http(handle_query(body, endpoint, cache))
    return status, json.loads(content)


def test_success_bytes() -> None:
    cache = EndpointCache()
    scale = install(cache, "scale", lambda values, factor=2: [v * factor for v in values])
    status, content = as_http(handle_query(b'{"data": {"values": [1.5]}}', scale, cache))
    assert status == 200
    assert re.fullmatch(
        rb'\{"response": \[3\.0\], "version": 3, "model": "scale", "uuid": "[0-9a-f-]{36}"\}',
        content,
    )
    assert query(scale, cache, b'{"data": [[1], 10]}')[1]["response"] == [10]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "Input body cannot be empty"),
        (b"{nope", 400, "JSONDecodeError : "),
        (b"[1]", 400, "RuntimeError : Input data must be a dictionary"),
        (
            b'{"x": 1}',
            400,
            'RuntimeError : Input data must be a dictionary with a key called "data"',
        ),
        (b'{"data": 1}', 400, "Error querying function 'f'"),
        (b'{"data": [0]}', 500, "Error querying function 'f'"),
    ],
)
def test_errors(body: bytes, status: int, message: str) -> None:
    cache = EndpointCache()
    f = install(cache, "f", lambda x: 1 / x)
    got_status, content = query(f, cache, body)
    assert got_status == status
    assert content["message"].startswith(message)


def test_endpoint_failure_names_the_exception() -> None:
    cache = EndpointCache()
    f = install(cache, "f", lambda x: 1 / x)
    assert query(f, cache, b'{"data": [0]}')[1]["info"] == {
        "uri": "f",
        "error": "ZeroDivisionError : division by zero",
        "type": "QueryFailed",
    }


def test_load_reports_why_an_object_cannot_run() -> None:
    cache = EndpointCache()
    good = install(cache, "good", len)
    assert handle_load(good, cache).outcome is Outcome.OK
    alias = install(cache, "alias", len, kind="alias")
    assert handle_load(alias, cache).message == "Load failed: Unknown object type: alias"
    cache.install(Artifact("0" * 64, b"junk"), b"junk")
    junk = handle_load(EndpointRef("junk", 1, "model", "0" * 64), cache)
    assert junk.message.startswith("Load failed: UnpicklingError : ")
    cache.install(Artifact(None, None, "its pickle was lost"), None)
    lost = handle_load(EndpointRef("lost", 1, "model", None), cache)
    assert lost.message == "Load failed: LookupError : its pickle was lost"
