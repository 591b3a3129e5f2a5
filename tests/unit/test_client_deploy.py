"""``Client.deploy``: upload, create/update, the TabPy 2.16 fallback and waiting for the load."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from tabpy.tabpy_tools._deploy import MAX_POLL_DELAY, wait_until_loaded
from tabpy.tabpy_tools.custom_query_object import CustomQueryObject
from tabpy.tabpy_tools.errors import (
    BadRequestError,
    DeploymentTimeoutError,
    EndpointExistsError,
    InvalidArgumentError,
    LoadFailedError,
    PayloadTooLargeError,
)
from tabpy.tabpy_tools.query_object import ARCHIVE_NAME
from tabpy.tabpy_tools.schema import generate_schema
from tests.unit.test_client import PASSWORD, FakeServer, envelope


def add(x: int, y: int) -> int:
    """Adds two numbers x and y"""
    return x + y


def mul(a: int, b: int) -> int:
    return a * b


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def _body(server: FakeServer, method: str, route: str) -> dict[str, Any]:
    (request,) = server.sent(method, route)
    body: dict[str, Any] = json.loads(request.content)
    return body


def test_deploy_new_endpoint_uploads_then_creates(server: FakeServer) -> None:
    schema = generate_schema(input={"x": 3, "y": 2}, output=5, input_description={"x": "first"})
    server.client().deploy("add", add, "Adds two numbers x and y", schema=schema, is_public=True)

    assert server.routes()[:3] == [
        "GET endpoints/add",
        f"PUT artifacts/{next(iter(server.artifacts))}",
        "POST endpoints",
    ]
    assert server.routes()[3:] == ["GET status"]  # loaded at once: no polling, no sleep
    upload = server.requests[1]
    assert upload.headers["content-type"] == "application/octet-stream"
    sha256 = hashlib.sha256(upload.content).hexdigest()
    assert upload.url.path == f"/artifacts/{sha256}"

    body = _body(server, "POST", "endpoints")
    assert body == {
        "name": "add",
        "type": "model",
        "version": 1,
        "description": "Adds two numbers x and y",
        "dependencies": [],
        "docstring": "Adds two numbers x and y",
        "methods": [{"method": "query"}],
        "required_files": [],
        "required_packages": [],
        "is_public": True,
        "schema": schema,  # a JSON object, not TabPy's Python-repr string
        "artifact": sha256,
    }
    uploaded = cloudpickle.loads(upload.content)
    assert type(uploaded) is CustomQueryObject
    assert uploaded.description == "Adds two numbers x and y"
    assert server.client().query("add", 2, 3)["response"] == 5


def test_deploy_without_docstring_or_schema(server: FakeServer) -> None:
    server.client().deploy("mul", mul)
    body = _body(server, "POST", "endpoints")
    assert body["docstring"] == "-- no docstring found in query function --"
    assert body["description"] == "" and body["is_public"] is False
    assert body["schema"] is None and "src_path" not in body


def test_deploy_over_existing_name_needs_override(server: FakeServer) -> None:
    server.add("add")
    with pytest.raises(EndpointExistsError) as caught:
        server.client().deploy("add", add)
    assert str(caught.value) == (
        "An endpoint with that name (add) already exists. "
        'Use "override = True" to force update an existing endpoint.'
    )
    assert isinstance(caught.value, RuntimeError)
    assert server.routes() == ["GET endpoints/add"]  # nothing uploaded


def test_override_updates_to_the_next_version(server: FakeServer) -> None:
    client = server.client()
    client.deploy("calc", add, "v1", is_public=True)
    client.deploy("calc", mul, "v2", override=True)
    body = _body(server, "PUT", "endpoints/calc")
    assert body["version"] == 2 and body["should_update_version"] is True
    assert body["description"] == "v2" and body["is_public"] is False
    (upload,) = server.sent("PUT", f"artifacts/{body['artifact']}")
    assert hashlib.sha256(upload.content).hexdigest() == body["artifact"]
    reply = client.query("calc", 2, 3)
    assert (reply["response"], reply["version"], reply["model"]) == (6, 2, "calc")


def test_override_of_a_name_this_server_does_not_list_lets_the_server_decide(
    server: FakeServer,
) -> None:
    # The name may exist in the shared registry without this instance having seen it yet.
    server.client().deploy("fresh", add, override=True)
    assert _body(server, "POST", "endpoints")["override"] is True
    server.client().deploy("plain", add)
    assert "override" not in json.loads(server.sent("POST", "endpoints")[-1].content)


def test_upload_of_identical_bytes_is_accepted_again(server: FakeServer) -> None:
    client = server.client()
    client.deploy("a", add)
    client.deploy("b", add)  # same pickle: the server answers 200 "already present"
    shas = [r.url.path.rsplit("/", 1)[1] for r in server.requests if r.method == "PUT"]
    assert len(shas) == 2 and shas[0] == shas[1]


@pytest.mark.parametrize("upload_status", [404, 405])
def test_tabpy_server_without_upload_route_gets_the_shared_folder_flow(
    tmp_path: Path, upload_status: int
) -> None:
    server = FakeServer(
        upload_route=False, upload_status=upload_status, upload_destination=str(tmp_path)
    )
    client = server.client()
    client.deploy("add", add, "Adds")
    client.deploy("add", mul, "Multiplies", override=True)

    assert server.routes()[:5] == [
        "GET endpoints/add",
        f"PUT artifacts/{server.requests[1].url.path.rsplit('/', 1)[1]}",
        "GET configurations/endpoint_upload_destination",
        "POST endpoints",
        "GET status",
    ]
    created = _body(server, "POST", "endpoints")
    updated = _body(server, "PUT", "endpoints/add")
    assert created["src_path"] == str(tmp_path / "endpoints" / "add" / "1")
    assert updated["src_path"] == str(tmp_path / "endpoints" / "add" / "2")
    assert "artifact" not in created and "artifact" not in updated
    archive = tmp_path / "endpoints" / "add" / "1" / ARCHIVE_NAME
    assert archive.read_bytes() == server.requests[1].content
    assert client.query("add", 2, 3)["response"] == 6


def test_load_failure_raises_with_the_servers_reason() -> None:
    server = FakeServer(load_error="Load failed: No module named 'sklearn'")
    with pytest.raises(LoadFailedError) as caught:
        server.client().deploy("add", add)
    assert str(caught.value) == "LoadFailed: Load failed: No module named 'sklearn'"
    assert isinstance(caught.value, RuntimeError)
    assert caught.value.last_error == "Load failed: No module named 'sklearn'"


def test_deploy_polls_status_quickly_until_loaded() -> None:
    server = FakeServer(polls_in_progress=4)
    started = time.monotonic()
    server.client().deploy("add", add)
    elapsed = time.monotonic() - started
    assert server.routes().count("GET status") == 5
    # 20 + 30 + 45 + 67.5 ms of pauses; TabPy's client slept at least one second.
    assert elapsed < 0.6


def test_upload_rejections_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer()
    rejection = envelope(400, "artifact hash mismatch")
    monkeypatch.setattr(server, "_put_artifacts", lambda request, sha256: rejection)
    with pytest.raises(BadRequestError, match="hash mismatch"):
        server.client().deploy("add", add)
    rejection = envelope(413, "Request too large")
    with pytest.raises(PayloadTooLargeError):
        server.client().deploy("add", add)
    assert "POST endpoints" not in server.routes()


def test_the_version_the_server_reports_is_awaited(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = server._store

    def store_as_version_7(name: str, body: dict[str, Any], version: int, code: int) -> Any:
        return original(name, body, 7, code)

    monkeypatch.setattr(server, "_store", store_as_version_7)
    server.client().deploy("add", add)
    assert server.status["add"]["version"] == 7


@pytest.mark.parametrize("name", ["a/b", "café", "", "x;y", "tab\tname"])
def test_invalid_names_are_refused_before_anything_is_sent(server: FakeServer, name: str) -> None:
    with pytest.raises(ValueError, match="can only contain: a-z, A-Z, 0-9, underscore, hyphens"):
        server.client().deploy(name, add)
    assert server.requests == []


def test_name_must_be_a_string(server: FakeServer) -> None:
    with pytest.raises(TypeError):
        server.client().deploy(5, add)  # type: ignore[arg-type]


def test_non_callable_is_refused(server: FakeServer) -> None:
    with pytest.raises(TypeError, match="must be a function"):
        server.client().deploy("x", 42)  # type: ignore[arg-type]
    assert server.requests == []


def test_remote_server_uses_the_upload_flow_and_leaks_nothing(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client = server.client(remote_server=True, localhost_endpoint="http://localhost:9400/")
        client.set_credentials("alice", PASSWORD)
        client.deploy("add", add)
    assert not any("evaluate" in route for route in server.routes())
    assert "remote_server=True is not needed" in caplog.text
    assert PASSWORD not in caplog.text
    assert all(PASSWORD.encode() not in r.content for r in server.requests)


# --- wait_until_loaded, with a fake clock ---------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _entry(status: str, version: int, last_error: str | None = None) -> dict[str, Any]:
    return {"f": {"version": version, "type": "model", "status": status, "last_error": last_error}}


def test_wait_backs_off_from_20_ms_to_250_ms_then_times_out() -> None:
    clock = FakeClock()
    with pytest.raises(DeploymentTimeoutError) as caught:
        wait_until_loaded(
            lambda: _entry("LoadInProgress", 1), "f", 2, 3.0, sleep=clock.sleep, clock=clock
        )
    assert clock.sleeps[:4] == pytest.approx([0.02, 0.03, 0.045, 0.0675])
    assert max(clock.sleeps) == MAX_POLL_DELAY
    assert sum(clock.sleeps) == pytest.approx(3.0)
    assert str(caught.value) == (
        "Waited more than 3 s for endpoint f to load version 2 "
        "(last status: LoadInProgress at version 1)"
    )
    assert isinstance(caught.value, RuntimeError) and isinstance(caught.value, TimeoutError)


def test_wait_returns_without_sleeping_when_already_loaded() -> None:
    clock = FakeClock()
    wait_until_loaded(
        lambda: _entry("LoadSuccessful", 3), "f", 2, 10, sleep=clock.sleep, clock=clock
    )
    assert clock.sleeps == []


def test_wait_ignores_a_failure_of_an_older_version() -> None:
    clock = FakeClock()
    replies = iter([_entry("LoadFailed", 1, "old"), {}, _entry("LoadSuccessful", 2)])
    wait_until_loaded(lambda: next(replies), "f", 2, 10, sleep=clock.sleep, clock=clock)
    assert len(clock.sleeps) == 2


def test_wait_raises_on_failure_of_the_awaited_version() -> None:
    clock = FakeClock()
    with pytest.raises(LoadFailedError, match="^LoadFailed: Load failed: boom$"):
        wait_until_loaded(
            lambda: _entry("LoadFailed", 2, "Load failed: boom"),
            "f",
            2,
            10,
            sleep=clock.sleep,
            clock=clock,
        )


def test_wait_reports_a_missing_endpoint() -> None:
    clock = FakeClock()
    with pytest.raises(DeploymentTimeoutError, match=r"last status: not listed in /status"):
        wait_until_loaded(dict, "f", 1, 0.1, sleep=clock.sleep, clock=clock)


def test_deploy_timeout_must_be_positive() -> None:
    with pytest.raises(InvalidArgumentError):
        FakeServer().client(deploy_timeout=0)
