"""JSON nested far deeper than any parser supports is the caller's mistake, not a crash.

About 10 KB of brackets nested 5,000 levels deep used to kill the worker that parsed it
(``WorkerCrashed ... exit code 1``). Now it gets a 400 envelope saying what to change, on
``/evaluate`` and ``/query``, and the workers all survive.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from deploy_support import client_for
from live_server import ServerProcess, module_server

DEPTH = 5000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from module_server(tmp_path_factory, {"TABPY_WORKERS": "2"})


def restarts(server: ServerProcess) -> float:
    metrics = server.http.get("/metrics").text
    return sum(float(n) for n in re.findall(r"tabpy_worker_restarts_total\{[^}]*\} (\S+)", metrics))


def deep_evaluate_body() -> bytes:
    return b'{"script": "return 1", "data": {"_arg1": ' + b"[" * DEPTH + b"]" * DEPTH + b"}}"


def test_deep_json_on_evaluate_is_a_400_and_kills_no_worker(server: ServerProcess) -> None:
    before = restarts(server)
    body = deep_evaluate_body()
    assert len(body) > 10_000
    for _ in range(100):
        reply = server.http.post(
            "/evaluate", content=body, headers={"Content-Type": "application/json"}
        )
        assert reply.status_code == 400, reply.text
        assert "nested too deeply" in reply.json()["message"]
    assert restarts(server) == before
    assert server.evaluate("return 1").status_code == 200


def test_deep_json_on_query_is_a_400(server: ServerProcess) -> None:
    with client_for(server) as client:
        client.deploy("echo", lambda x: x, "echoes", override=True)
    before = restarts(server)
    body = b'{"data": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"
    for _ in range(10):
        reply = server.http.post("/query/echo", content=body)
        assert reply.status_code == 400, reply.text
        assert "nested too deeply" in reply.json()["message"]
    assert restarts(server) == before
