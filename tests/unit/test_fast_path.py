"""The lean path for ``/evaluate`` and ``/query/<name>`` answers exactly as the full stack does.

Each request goes once through the application (``create_app``: the lean path first) and once
straight through the Starlette application behind it, on the same started context. The two
replies must agree on the status, every header (but the per-request ``X-Request-ID`` and
``Date``, unless the client chose the id) and the body byte for byte. The requests cover what
the lean path must keep: authentication and its challenges, ``TABPY_AUTHZ`` roles and callers,
size limits, gzip, CORS headers (and their absence on the refusals before the route), unknown
endpoints, the request id and the instance header.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tabpy.registry.service_info import ServiceInfo
from tabpy.registry.store import Registry
from tabpy.runtime.catalog import Catalog
from tabpy.server.app import create_app
from tabpy.server.context import ServerContext
from tabpy.server.fast_path import FastPath
from tests.unit.authz_support import (
    AnswersNull,
    authenticator,
    basic,
    bearer,
    grant_roles,
    settings_for,
)

CORS = ("https://tableau.example.com", "Content-Type, Authorization", "GET, POST, OPTIONS")
EVALUATE = b'{"script": "return 1", "data": {}}'
QUERY = b'{"data": {"x": [1]}}'


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""


CASES: dict[str, Case] = {
    "evaluate": Case("POST", "/evaluate", basic("tableau"), EVALUATE),
    "evaluate, bearer": Case("POST", "/evaluate", bearer("svc", ["tableau-server"]), EVALUATE),
    "evaluate, no credentials": Case("POST", "/evaluate", {}, EVALUATE),
    "evaluate, wrong password": Case("POST", "/evaluate", basic("tableau", "nope"), EVALUATE),
    "evaluate, no evaluator role": Case("POST", "/evaluate", basic("analyst"), EVALUATE),
    "evaluate, declared too large": Case(
        "POST", "/evaluate", {**basic("tableau"), "Content-Length": "999999999"}, b"{}"
    ),
    "evaluate, gzip": Case(
        "POST",
        "/evaluate",
        {**basic("tableau"), "Content-Encoding": "gzip"},
        gzip.compress(EVALUATE),
    ),
    "evaluate, broken gzip": Case(
        "POST", "/evaluate", {**basic("tableau"), "Content-Encoding": "gzip"}, b"not gzip"
    ),
    "evaluate, client's request id": Case(
        "POST", "/evaluate", {**basic("tableau"), "X-Request-ID": "abc-123"}, EVALUATE
    ),
    "evaluate, GET (405)": Case("GET", "/evaluate", basic("tableau")),
    "evaluate, preflight": Case("OPTIONS", "/evaluate", {}),
    "query": Case("POST", "/query/add", basic("tableau"), QUERY),
    "query, GET": Case("GET", "/query/add", basic("tableau")),
    "query, not a caller of it": Case("POST", "/query/add", basic("scientist"), QUERY),
    "query, unknown endpoint": Case("POST", "/query/missing", basic("tableau"), QUERY),
    "query, no credentials": Case("POST", "/query/add", {}, QUERY),
    "query, deeper path": Case("POST", "/query/add/more", basic("tableau"), QUERY),
    "query, empty name": Case("POST", "/query/", basic("tableau"), QUERY),
}


@dataclass
class Pair:
    lean: TestClient
    full: TestClient


def started(tmp_path: Path, **extra: str) -> Iterator[Pair]:
    settings = settings_for(tmp_path, TABPY_INSTANCE_ID="tabpy-7", **extra)
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    grant_roles(registry)
    pool: Any = AnswersNull()
    context = ServerContext(
        settings,
        ServiceInfo("TabPy Server", "", "0", "", *CORS),
        pool=pool,
        catalog=Catalog(registry, pool),
        auth=authenticator(settings, registry),
    )
    app = create_app(context)
    assert isinstance(app, FastPath)
    try:
        with TestClient(app) as lean:
            full = TestClient(app.app)  # the same started context, without the lean path
            artifact = b"add"
            sha256 = hashlib.sha256(artifact).hexdigest()
            assert lean.put(f"/artifacts/{sha256}", content=artifact, **_as("dev")).is_success
            deployed = lean.post(
                "/endpoints",
                json={"name": "add", "artifact": sha256, "callers": ["tableau"]},
                **_as("dev"),
            )
            assert deployed.status_code == 201, deployed.text
            yield Pair(lean, full)
    finally:
        registry.close()


def _as(user: str) -> dict[str, Any]:
    return {"headers": basic(user)}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    yield from started(tmp_path_factory.mktemp("lean"))


def send(client: TestClient, case: Case) -> httpx.Response:
    return client.request(case.method, case.path, headers=dict(case.headers), content=case.body)


def comparable(response: httpx.Response, case: Case) -> tuple[int, list[tuple[str, str]], bytes]:
    skip = {"date"} if "X-Request-ID" in case.headers else {"date", "x-request-id"}
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in skip]
    return response.status_code, headers, response.content


@pytest.mark.parametrize("name", CASES)
def test_the_lean_path_answers_as_the_full_stack(pair: Pair, name: str) -> None:
    case = CASES[name]
    lean, full = send(pair.lean, case), send(pair.full, case)
    assert comparable(lean, case) == comparable(full, case)
    assert lean.headers["X-TabPy-Instance"] == "tabpy-7"
    assert len(lean.headers["X-Request-ID"]) > 0


def test_the_answers_compared_are_the_expected_ones(pair: Pair) -> None:
    """The comparison above is only worth something if the cases do what they say."""
    expected = {
        "evaluate": 200,
        "evaluate, no credentials": 401,
        "evaluate, no evaluator role": 403,
        "evaluate, declared too large": 413,
        "evaluate, gzip": 200,
        "evaluate, broken gzip": 400,
        "query": 200,
        "query, not a caller of it": 403,
        "query, unknown endpoint": 404,
        "query, deeper path": 404,
    }
    for name, status in expected.items():
        assert send(pair.lean, CASES[name]).status_code == status, name
    ok = send(pair.lean, CASES["evaluate"])
    assert ok.headers["Access-Control-Allow-Origin"] == CORS[0]
    refused = send(pair.lean, CASES["evaluate, no credentials"])
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert refused.headers["WWW-Authenticate"].startswith("Basic realm=")
    echoed = send(pair.lean, CASES["evaluate, client's request id"])
    assert echoed.headers["X-Request-ID"] == "abc-123"


def test_scripts_switched_off_are_refused_alike(tmp_path: Path) -> None:
    case = CASES["evaluate"]
    for pair in started(tmp_path, TABPY_EVALUATE_ENABLE="false"):
        lean, full = send(pair.lean, case), send(pair.full, case)
        assert lean.status_code == 404, lean.text
        assert comparable(lean, case) == comparable(full, case)
        assert "Access-Control-Allow-Origin" not in lean.headers
