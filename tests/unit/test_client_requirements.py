"""``Client.deploy(requirements=..., wait=...)``: what is sent, and waiting for the build."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tabpy.tabpy_tools._environment import requirements_body, wait_for_environment
from tabpy.tabpy_tools.errors import (
    DeploymentError,
    DeploymentTimeoutError,
    InvalidArgumentError,
    LoadFailedError,
)
from tests.unit.test_client import FakeServer


def add(x: int, y: int) -> int:
    return x + y


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [
        ("requirements.txt", "requirements.txt"),
        ("requirements-prod.in", "requirements.txt"),
        ("uv.lock", "uv.lock"),
        ("pylock.toml", "pylock.toml"),
        ("pylock.prod.toml", "pylock.toml"),
    ],
)
def test_a_file_is_sent_as_its_text_and_format(tmp_path: Path, filename: str, fmt: str) -> None:
    path = tmp_path / filename
    path.write_text("six==1.16.0\n", encoding="utf-8")
    assert requirements_body(str(path)) == {"lock": "six==1.16.0\n", "format": fmt}
    assert requirements_body(path) == {"lock": "six==1.16.0\n", "format": fmt}


def test_a_list_is_sent_as_given() -> None:
    assert requirements_body(["six==1.16.0", "numpy<2"]) == ["six==1.16.0", "numpy<2"]
    assert requirements_body(("six",)) == ["six"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (["six", 3], "list of requirement strings"),
        (42, "not int"),
        ("/no/such/requirements.txt", "cannot read"),
    ],
)
def test_bad_requirements_are_refused_before_anything_is_sent(value: Any, words: str) -> None:
    server = FakeServer()
    with pytest.raises(InvalidArgumentError, match=words):
        server.client().deploy("add", add, requirements=value)
    assert server.requests == []


class EnvironmentServer(FakeServer):
    """The fake server, echoing ``requirements`` and reporting a build for a few polls."""

    def __init__(self, phases: list[str], outcome: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phases = phases
        self.outcome = outcome
        self.bodies: list[dict[str, Any]] = []

    def _store(self, name: str, body: dict[str, Any], version: int, code: int) -> Any:
        self.bodies.append(body)
        response = super()._store(name, body, version, code)
        if "requirements" in body:
            self.endpoints[name]["requirements"] = body["requirements"]
            reply = json.loads(response.content)
            reply[name]["requirements"] = body["requirements"]
            response = type(response)(response.status_code, json=reply)
        return response

    def _get_status(self, request: Any, name: str) -> Any:
        response = super()._get_status(request, name)
        status = json.loads(response.content)
        for entry_name, entry in status.items():
            if "requirements" not in self.endpoints.get(entry_name, {}):
                continue
            if self.phases:
                phase = self.phases.pop(0)
                entry.update(status="LoadInProgress", environment={"phase": phase})
            else:
                entry.update(self.outcome)
        return type(response)(200, json=status)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_deploy_sends_requirements_and_waits_through_the_build() -> None:
    server = EnvironmentServer(
        ["resolving requirements", "installing packages"], {"status": "LoadSuccessful"}
    )
    server.client().deploy("add", add, requirements=["six==1.16.0"])
    assert server.bodies[-1]["requirements"] == ["six==1.16.0"]
    assert server.phases == []  # it polled through both phases


def test_a_failed_build_raises_with_the_installers_words() -> None:
    words = "Environment build failed while resolving requirements: error: No solution found"
    server = EnvironmentServer(
        ["resolving requirements"], {"status": "LoadFailed", "last_error": words}
    )
    with pytest.raises(LoadFailedError) as failed:
        server.client().deploy("add", add, requirements=["nope==9"])
    assert failed.value.last_error == words


def test_wait_false_returns_at_once() -> None:
    server = EnvironmentServer(["resolving requirements"] * 100, {"status": "LoadSuccessful"})
    server.client().deploy("add", add, requirements=["six"], wait=False)
    assert len(server.phases) == 100  # /status never asked
    assert not [r for r in server.requests if r.url.path.endswith("/status")]


def test_a_tabpy_server_without_an_upload_route_refuses_requirements() -> None:
    server = FakeServer(upload_route=False)
    with pytest.raises(DeploymentError, match="cannot build per-endpoint environments"):
        server.client().deploy("add", add, requirements=["six"])
    assert server.endpoints == {}


def test_a_server_that_ignores_requirements_is_reported() -> None:
    server = FakeServer()  # has the upload route, but knows nothing of environments
    with pytest.raises(DeploymentError, match="was deployed without them"):
        server.client().deploy("add", add, requirements=["six"])


def test_progress_goes_to_a_terminal_with_phase_and_time() -> None:
    statuses = [
        {
            "m": {
                "version": 1,
                "status": "LoadInProgress",
                "environment": {"phase": "installing packages"},
            }
        },
        {"m": {"version": 1, "status": "LoadSuccessful"}},
    ]
    now = [100.0]
    terminal = Terminal()
    wait_for_environment(
        lambda: statuses.pop(0),
        "m",
        1,
        30,
        stream=terminal,
        sleep=lambda s: now.__setitem__(0, now[0] + 5),
        clock=lambda: now[0],
    )
    shown = terminal.getvalue()
    assert "\rm: installing packages (0 s)" in shown and shown.endswith("\n")


def test_no_progress_is_written_when_not_a_terminal() -> None:
    statuses = [
        {"m": {"version": 1, "status": "LoadInProgress", "environment": {"phase": "queued"}}},
        {"m": {"version": 1, "status": "LoadSuccessful"}},
    ]
    stream = io.StringIO()
    wait_for_environment(lambda: statuses.pop(0), "m", 1, 30, stream=stream, sleep=lambda s: None)
    assert stream.getvalue() == ""


def test_the_wait_times_out_only_once_the_build_stops_moving() -> None:
    now = [0.0]
    building = {
        "m": {
            "version": 2,
            "status": "LoadInProgress",
            "environment": {"phase": "installing packages"},
        }
    }
    stuck = {"m": {"version": 1, "status": "LoadSuccessful"}}  # the old version: not ours
    statuses = [building] * 10 + [stuck] * 100
    with pytest.raises(DeploymentTimeoutError, match="LoadSuccessful at version 1"):
        wait_for_environment(
            lambda: statuses.pop(0),
            "m",
            2,
            10,
            stream=io.StringIO(),
            sleep=lambda s: now.__setitem__(0, now[0] + 2),
            clock=lambda: now[0],
        )
    # Ten polls of 2 s while building (20 s, past the 10 s timeout), then 10 s without progress.
    assert now[0] >= 28
