"""``Client.versions``, ``Client.rollback`` and removing over-long names, against a fake server."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tabpy.tabpy_tools.client import MAX_NAME_LENGTH, Client
from tabpy.tabpy_tools.errors import (
    InvalidArgumentError,
    LoadFailedError,
    NotFoundError,
)


def envelope(status: int, message: str, info: Any = None) -> httpx.Response:
    return httpx.Response(status, json={"message": message, "info": {} if info is None else info})


class History:
    """One endpoint's versions, served the way the server does."""

    def __init__(self, name: str, load_error: str | None = None) -> None:
        self.name = name
        self.load_error = load_error
        self.requests: list[httpx.Request] = []
        self.versions = [self._entry(1, "one"), self._entry(2, "two")]

    def _entry(self, version: int, description: str) -> dict[str, Any]:
        return {
            "version": version,
            "artifact": f"{version:064x}",
            "size": 10 * version,
            "created_at": 1795828900 + version,
            "description": description,
            "docstring": f"Doc {description}.",
            "schema": None,
            "current": False,
        }

    @property
    def current(self) -> int:
        return int(self.versions[-1]["version"])

    def client(self) -> Client:
        return Client("http://tabpy.test:9400/", transport=httpx.MockTransport(self))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode()
        quoted = "/" + quote(self.name, safe="")
        if path == "/status":
            status = "LoadFailed" if self.load_error else "LoadSuccessful"
            entry = {"version": self.current, "type": "model", "status": status}
            return httpx.Response(200, json={self.name: {**entry, "last_error": self.load_error}})
        if path == f"/endpoints{quoted}/versions" and request.method == "GET":
            listed = [{**v, "current": v["version"] == self.current} for v in self.versions]
            return httpx.Response(200, json=listed)
        if path == f"/endpoints{quoted}/rollback" and request.method == "POST":
            wanted = json.loads(request.content)["version"]
            old = next((v for v in self.versions if v["version"] == wanted), None)
            if old is None:
                return envelope(404, f"endpoint {self.name} has no version {wanted}.")
            self.versions.append({**old, "version": self.current + 1})
            return httpx.Response(200, json={self.name: {"version": self.current}})
        return envelope(404, f"endpoint {path} does not exist.")


def test_versions_returns_the_servers_list() -> None:
    server = History("Sentiment Analysis")
    versions = server.client().versions("Sentiment Analysis")
    assert [(v["version"], v["description"], v["current"]) for v in versions] == [
        (1, "one", False),
        (2, "two", True),
    ]
    assert server.requests[0].url.raw_path == b"/endpoints/Sentiment%20Analysis/versions"


def test_versions_of_an_unknown_endpoint() -> None:
    with pytest.raises(NotFoundError):
        History("add").client().versions("nope")


def test_rollback_returns_the_new_version_once_it_is_served() -> None:
    server = History("add")
    assert server.client().rollback("add", 1) == 3
    rollback, status = server.requests
    assert (rollback.method, rollback.url.path) == ("POST", "/endpoints/add/rollback")
    assert json.loads(rollback.content) == {"version": 1}
    assert status.url.path == "/status"  # waited for the restored version to load
    assert server.versions[-1]["description"] == "one"


def test_rollback_to_an_unknown_version() -> None:
    with pytest.raises(NotFoundError) as caught:
        History("add").client().rollback("add", 9)
    assert caught.value.message == "endpoint add has no version 9."


def test_rollback_reports_a_restored_function_that_no_longer_loads() -> None:
    server = History("add", load_error="Load failed: No module named 'gone'")
    with pytest.raises(LoadFailedError, match="gone"):
        server.client().rollback("add", 1)


@pytest.mark.parametrize("version", ["1", 1.0, True, None])
def test_rollback_takes_a_whole_number_before_sending(version: Any) -> None:
    server = History("add")
    with pytest.raises(InvalidArgumentError, match="whole number"):
        server.client().rollback("add", version)
    assert server.requests == []


def test_remove_sends_an_over_long_name_in_the_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = Client("http://h:9400/", transport=httpx.MockTransport(handler))
    long_name = "n" * (MAX_NAME_LENGTH + 1)
    client.remove(long_name)
    client.remove("n" * MAX_NAME_LENGTH)
    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/endpoints")
    assert json.loads(seen[0].content) == {"name": long_name}
    assert seen[1].url.path == "/endpoints/" + "n" * MAX_NAME_LENGTH
    assert seen[1].content == b""
