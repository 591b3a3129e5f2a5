"""Calling deployed endpoints: ``/query/<name>`` over HTTP, and ``tabpy.query`` from inside an
``/evaluate`` script."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from deploy_support import client_for
from live_server import ServerProcess, envelope, module_server, wait_for

QUERY_FAILED_INFO = (
    "The endpoint you're trying to query did not respond. Please make sure the endpoint "
    "exists and the correct set of arguments are provided."
)


def scale(values: list[float], factor: float = 2.0) -> list[float]:
    return [v * factor for v in values]


def legacy(data: Any, method: str) -> Any:
    return {"data": data, "method": method}


def fail(x: Any) -> Any:
    raise ValueError(f"bad {x}")


def forever() -> None:
    while True:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from module_server(
        tmp_path_factory, {"TABPY_WORKERS": "2", "TABPY_EVALUATE_TIMEOUT": "2"}
    )


@pytest.fixture(scope="module", autouse=True)
def endpoints(server: ServerProcess) -> None:
    with client_for(server) as client:
        client.deploy("scale", scale)
        client.deploy("legacy", legacy)
        client.deploy("fail", fail)
        client.deploy("forever", forever)
        client.deploy("nan", lambda: [1.0, math.nan, math.inf])
        client.deploy("opaque", lambda: object())
        client.deploy("Sentiment Analysis", lambda texts: [len(t) for t in texts])


def query(server: ServerProcess, name: str, body: Any) -> Any:
    return server.http.post(f"/query/{name}", json=body)


def test_positional_and_keyword_data(server: ServerProcess) -> None:
    reply = query(server, "scale", {"data": [[1, 2]]})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json; charset=UTF-8"
    body = reply.json()
    assert list(body) == ["response", "version", "model", "uuid"]
    assert (body["response"], body["version"], body["model"]) == ([2.0, 4.0], 1, "scale")
    keywords = query(server, "scale", {"data": {"values": [1], "factor": 3}})
    assert keywords.json()["response"] == [3]


def test_get_works_like_post_and_names_are_percent_decoded(server: ServerProcess) -> None:
    reply = server.http.request(
        "GET", "/query/Sentiment%20Analysis", json={"data": [["happy", "sad"]]}
    )
    assert reply.status_code == 200
    assert reply.json()["response"] == [5, 3]


def test_legacy_method_key(server: ServerProcess) -> None:
    reply = query(server, "legacy", {"data": [1], "method": "m"})
    assert reply.json()["response"] == {"data": [1], "method": "m"}


def test_nan_becomes_null_not_bare_nan(server: ServerProcess) -> None:
    reply = query(server, "nan", {"data": []})
    assert reply.status_code == 200
    assert b'"response": [1.0, null, null]' in reply.content


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "Input body cannot be empty"),
        (b"[1]", 400, "RuntimeError : Input data must be a dictionary"),
        (b"{}", 400, 'RuntimeError : Input data must be a dictionary with a key called "data"'),
        (b'{"data": 5}', 400, "Error querying function 'scale'"),
    ],
)
def test_bad_bodies(server: ServerProcess, body: bytes, status: int, message: str) -> None:
    reply = server.http.post("/query/scale", content=body)
    assert reply.status_code == status
    assert reply.json()["message"] == message


def test_data_type_error_names_the_type(server: ServerProcess) -> None:
    info = server.http.post("/query/scale", content=b'{"data": 5}').json()["info"]
    assert info == {
        "uri": "scale",
        "error": "Query parameter needs to be a dictionary or a list. "
        "Given value is of type <class 'int'>",
        "type": "QueryFailed",
    }


def test_unknown_endpoint(server: ServerProcess) -> None:
    reply = query(server, "nope", {"data": []})
    assert reply.status_code == 404
    assert reply.content == envelope("UnknownURI", "Endpoint 'nope' does not exist")


def test_function_errors(server: ServerProcess) -> None:
    raised = query(server, "fail", {"data": [7]})
    assert raised.status_code == 500
    assert raised.json() == {
        "message": "Error querying function 'fail'",
        "info": {"uri": "fail", "error": "ValueError : bad 7", "type": "QueryFailed"},
    }
    wrong_arity = query(server, "scale", {"data": []}).json()["info"]["error"]
    assert wrong_arity.startswith("TypeError : ")
    opaque = query(server, "opaque", {"data": []}).json()["info"]["error"]
    assert opaque.startswith("TypeError : Result from object query is not json serializable")


def test_runaway_endpoint_is_killed(server: ServerProcess) -> None:
    reply = query(server, "forever", {"data": []})
    assert reply.status_code == 408
    assert reply.content == envelope("User defined script timed out. Timeout is set to 2.0 s.")
    assert query(server, "scale", {"data": [[1]]}).status_code == 200


def test_tabpy_query_inside_evaluate(server: ServerProcess) -> None:
    script = "return tabpy.query('scale', _arg1, factor=10)['response']"
    reply = server.evaluate(script, {"_arg1": [1, 2]})
    assert reply.status_code == 200
    assert reply.json() == [10, 20]  # TabPy drops factor=10 here
    full = server.evaluate("return tabpy.query('scale', [1])", {})
    assert set(full.json()) == {"response", "version", "model", "uuid"}


def test_tabpy_query_decodes_percent_encoded_names(server: ServerProcess) -> None:
    """TabPy's own tests call endpoints this way: the name travels in a URL path."""
    script = "return tabpy.query('Sentiment%20Analysis', _arg1)['response']"
    reply = server.evaluate(script, {"_arg1": ["happy", "sad"]})
    assert (reply.status_code, reply.json()) == (200, [5, 3])


def test_tabpy_query_missing_endpoint_or_failure(server: ServerProcess) -> None:
    """TabPy's 404, with what actually went wrong after TabPy's words."""
    for script, explained in (
        ("return tabpy.query('nope')['response']", "there is no endpoint named 'nope'"),
        ("return tabpy.query('fail', 1)['response']", "The endpoint said: ValueError : bad 1"),
    ):
        reply = server.evaluate(script)
        assert reply.status_code == 404
        assert reply.json()["message"] == "Error processing script"
        assert reply.json()["info"].startswith(QUERY_FAILED_INFO + " ")
        assert explained in reply.json()["info"]
    envelope_reply = server.evaluate("return tabpy.query('nope')")
    assert envelope_reply.json() == {
        "message": "UnknownURI",
        "info": "Endpoint 'nope' does not exist",
    }


def test_redeploy_under_load_loses_no_request(server: ServerProcess) -> None:
    """Queries keep succeeding while the endpoint is redeployed; versions never go back."""
    with client_for(server) as client:
        client.deploy("moving", lambda: 1)
        failures: list[str] = []
        versions: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                reply = server.http.post("/query/moving", json={"data": []})
                if reply.status_code != 200:
                    failures.append(reply.text)
                    continue
                body = reply.json()
                assert body["response"] == body["version"]
                versions.append(body["version"])

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            for version in range(2, 7):
                client.deploy("moving", _returns(version), override=True)
                started = time.monotonic()
                wait_for(
                    lambda v=version: client.query("moving")["response"] == v,
                    1.0,
                    f"version {version} to be served",
                )
                assert time.monotonic() - started < 1.0
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    assert failures == []
    assert len(versions) > 20
    assert max(versions) == 6


def _returns(value: int) -> Any:
    return lambda: value
