"""Requests the OpenAPI fuzzer (and the probes around it) found mishandled, in-process.

Each test is one finding: the request that used to get a 500 envelope, invalid JSON or a
reply the document does not allow, and the answer it gets now. The endpoint routes run with
a real registry (SQLite, and PostgreSQL where the bug was PostgreSQL's) and a one-worker pool,
shared by the module's tests (each uses its own endpoint names); routing and authentication
need neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from tabpy.config import load_settings
from tabpy.registry.service_info import ServiceInfo
from tabpy.registry.store import Registry
from tabpy.runtime.catalog import Catalog
from tabpy.runtime.pool import PoolOptions, WorkerPool
from tabpy.security.authenticator import build_authenticator
from tabpy.server.app import create_app
from tabpy.server.context import ServerContext
from tabpy.server.http_errors import unexpected_error
from tabpy.server.responses import encode_json


def context_for(
    directory: Path,
    registry: Registry | None = None,
    subdirectory: str = "",
    overrides: dict[str, str] | None = None,
) -> ServerContext:
    """A context with a worker pool and catalog when ``registry`` is given, else without."""
    settings = load_settings(None, {"TABPY_STATE_PATH": str(directory), **(overrides or {})})
    pool: Any = WorkerPool(PoolOptions(size=1)) if registry is not None else None
    return ServerContext(
        settings,
        ServiceInfo("TabPy Server", "", "0", subdirectory, "", "", ""),
        pool=pool,
        catalog=Catalog(registry, pool) if registry is not None else None,  # type: ignore[arg-type]
        auth=build_authenticator(settings),
    )


@contextlib.contextmanager
def client_for(directory: Path, url: str) -> Iterator[TestClient]:
    """The whole application on the registry at ``url``, started (pool, catalog)."""
    registry = Registry(url)
    try:
        with TestClient(create_app(context_for(directory, registry))) as client:
            yield client
    finally:
        registry.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory = tmp_path_factory.mktemp("sqlite")
    with client_for(directory, f"sqlite:///{directory / 'registry.db'}") as test_client:
        yield test_client


def routing_client(tmp_path: Path, **kwargs: Any) -> TestClient:
    """The application without its lifespan: for what routing and authentication decide."""
    return TestClient(create_app(context_for(tmp_path, **kwargs)))


def alias(client: TestClient, name: str, **fields: Any) -> Any:
    body = {"name": name, "type": "alias", "target": "somewhere", **fields}
    return client.post("/endpoints", content=json.dumps(body))


# --- 405 without Allow ---------------------------------------------------------------------------


@pytest.mark.parametrize("subdirectory", ["", "analytics.v1"])
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/endpoints", "DELETE, GET, HEAD, OPTIONS, POST"),
        ("GET", "/evaluate", "OPTIONS, POST"),
        ("PATCH", "/query/x", "GET, HEAD, OPTIONS, POST"),
        ("PUT", "/endpoints/x/versions", "GET, HEAD"),
    ],
)
def test_405_lists_every_method_of_the_path_in_allow(
    tmp_path: Path, subdirectory: str, method: str, path: str, allowed: str
) -> None:
    """Was: no ``Allow`` at all (RFC 9110 requires it). Starlette's own names only the first
    route of a path, and each method of a path is a route of its own here."""
    prefix = f"/{subdirectory}" if subdirectory else ""
    client = routing_client(tmp_path, subdirectory=subdirectory)
    response = client.request(method, prefix + path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.headers["content-type"] == "text/html; charset=UTF-8"


# --- lone surrogates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("DELETE", "/endpoints", '{"name": "\\ud800"}'),
        ("POST", "/endpoints", '{"name": "a", "type": "alias", "target": "\\ud800"}'),
        (
            "POST",
            "/endpoints",
            '{"name": "a", "type": "alias", "target": "b", "description": "\\udfff"}',
        ),
        ("POST", "/endpoints", '{"name": "a", "src_path": "x\\ud800"}'),
        ("PUT", "/endpoints/a", '{"docstring": "\\udbff"}'),
    ],
)
def test_a_lone_surrogate_is_a_400_saying_so(
    client: TestClient, method: str, path: str, body: str
) -> None:
    """Was: 500 (UnicodeEncodeError from the database driver or the file system)."""
    response = client.request(method, path, content=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "Failed to decode input body"
    assert "lone UTF-16 surrogate" in response.json()["info"]


def test_surrogate_pairs_and_plain_text_are_still_accepted(client: TestClient) -> None:
    response = alias(client, "pair", description="smile \U0001f600", docstring="\\ud800 as text")
    assert response.status_code == 201, response.text
    assert response.json()["pair"]["description"] == "smile \U0001f600"
    assert response.json()["pair"]["docstring"] == "\\ud800 as text"


# --- NaN and infinities in replies ---------------------------------------------------------------


def test_non_finite_numbers_in_a_schema_come_back_as_null(client: TestClient) -> None:
    """Was: the create reply, ``GET /endpoints`` (for every later caller) and the versions
    list held bare ``NaN``/``Infinity``, which no strict JSON parser reads."""
    body = (
        '{"name": "odd", "type": "alias", "target": "x", "schema": [NaN, 1e999, -Infinity, "NaN"]}'
    )
    created = client.post("/endpoints", content=body)
    assert created.status_code == 201
    expected = [None, None, None, "NaN"]
    for response in (created, client.get("/endpoints"), client.get("/endpoints/odd")):
        for token in (b"NaN,", b"Infinity"):
            assert token not in response.content
        document = json.loads(response.content, parse_constant=_refuse)
        info = document.get("odd", document)
        assert info["schema"] == expected


def _refuse(token: str) -> Any:
    raise AssertionError(f"{token} is not JSON")


def test_encode_json_keeps_strings_and_python_separators() -> None:
    value = {"a": [math.nan, "NaN", 'say "Infinity"', -math.inf, 1.5], "NaN": {"b": math.inf}}
    assert encode_json(value) == (
        b'{"a": [null, "NaN", "say \\"Infinity\\"", null, 1.5], "NaN": {"b": null}}'
    )
    assert encode_json({"x": [1, 2]}) == json.dumps({"x": [1, 2]}).encode()


# --- huge numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2**63, 10**30, -(2**70)])
def test_a_version_beyond_64_bits_is_a_400(client: TestClient, version: int) -> None:
    """Was: 500 (OverflowError binding the number into the registry's query)."""
    name = f"big {len(str(version))}"
    assert alias(client, name).status_code == 201
    body = json.dumps({"version": version})
    response = client.post(f"/endpoints/{name}/rollback", content=body)
    assert response.status_code == 400, response.text
    assert f"version {version} is out of range" in response.json()["message"]


# --- NUL in a path or a name, on PostgreSQL ------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from tests.integration.postgres_support import postgres_cluster

    with postgres_cluster() as url, client_for(tmp_path_factory.mktemp("pg"), url) as client:
        yield client


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("DELETE", "/endpoints/a%00b", None),
        ("GET", "/endpoints/%00/versions", None),
        ("POST", "/endpoints/%00/rollback", '{"version": 1}'),
        ("DELETE", "/endpoints", '{"name": "\\u0000"}'),
    ],
)
def test_a_name_with_nul_is_not_found_on_postgresql(
    postgres_client: TestClient, method: str, path: str, body: str | None
) -> None:
    """Was: 500 (PostgreSQL refuses NUL even in a query's parameters); SQLite said 404."""
    response = postgres_client.request(method, path, content=body)
    assert response.status_code == 404, response.text
    assert response.json()["message"].endswith("does not exist.")


# --- the unexpected-error log line ---------------------------------------------------------------


def test_an_unexpected_error_logs_the_path_escaped(caplog: pytest.LogCaptureFixture) -> None:
    """Was: the raw path, so a URL that hit a bug put NUL or a terminal escape sequence
    (``%1B[2J`` clears the screen of whoever tails the log) into the log."""
    scope = {"type": "http", "method": "GET", "path": "/x\x1b[2Jy\x00", "headers": []}
    with caplog.at_level(logging.ERROR, logger="tabpy.server.http_errors"):
        response = asyncio.run(unexpected_error(Request(scope), RuntimeError("boom")))
    assert response.status_code == 500
    (record,) = caplog.records
    assert record.getMessage().isprintable()
    assert record.getMessage().endswith("GET /x\\x1b[2Jy\\x00")


# --- odd header values ---------------------------------------------------------------------------


@pytest.mark.parametrize("password_file", [False, True])
@pytest.mark.parametrize("credentials", ["Basic \u00ff\u00fe\u0080", "Basic caf\u00e9=="])
def test_basic_credentials_that_are_not_ascii_are_refused_not_a_500(
    tmp_path: Path, password_file: bool, credentials: str
) -> None:
    """Was: 500 (base64 refuses a str with non-ASCII characters with a bare ValueError);
    a header is latin-1 on the wire, so any client can send these bytes."""
    overrides = {}
    if password_file:
        passwords = tmp_path / "passwords.txt"
        passwords.write_text("someone 0123\n", encoding="utf-8")
        overrides["TABPY_PWD_FILE"] = str(passwords)
    client = routing_client(tmp_path, overrides=overrides)
    response = client.get("/info", headers={"Authorization": credentials.encode("latin-1")})
    # Malformed Basic credentials are no credentials: refused with 401 when the server has a
    # password file, and anonymous (not the 406 of well-formed ones) when it has none.
    assert response.status_code == (401 if password_file else 200), response.text


@pytest.mark.parametrize("version", ["abc", "1.x", "-"])
def test_metrics_with_an_unreadable_openmetrics_version_gets_the_text_format(
    client: TestClient, version: str
) -> None:
    """Was: 500 (prometheus_client compares the version's parts as str and int)."""
    accept = f"application/openmetrics-text; version={version}"
    response = client.get("/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"tabpy_" in response.content


# --- a client that goes away mid-body ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/evaluate", "/endpoints", "/endpoints/x/rollback"])
def test_a_client_gone_mid_body_is_one_info_line_not_an_error_with_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """Was: ``Unexpected ClientDisconnect`` at ERROR with a traceback, twice (our handler and
    uvicorn's), for every request whose body the HTTP edge refused half-way (a malformed
    chunk): a cheap way to fill the log."""
    app = create_app(context_for(tmp_path))
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-length", b"100")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
        "root_path": "",
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))  # raises nothing
    assert sent[0]["status"] == 400
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "tabpy.access"
    ]
    assert not [r for r in caplog.records if r.exc_info]
    assert any("Client disconnected during POST" in r.getMessage() for r in caplog.records)
