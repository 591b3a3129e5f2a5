"""Managing endpoints: listing, deploying, updating, versions and rollback, deleting, and pickles
that fail to load, through our client and through raw HTTP."""

from __future__ import annotations

import json
import pickle
import sys
import types
from collections.abc import Iterator

import pytest
from deploy_support import client_for, deploy_raw, pickled, upload
from live_server import ServerProcess, envelope, module_server

INFO_KEYS = [
    "description",
    "type",
    "version",
    "dependencies",
    "target",
    "creation_time",
    "last_modified_time",
    "schema",
    "is_public",
    "docstring",
]


def add(x: list[int], y: list[int]) -> list[int]:
    """Adds two lists elementwise. 100% sure, très bien."""
    return [a + b for a, b in zip(x, y, strict=True)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from module_server(tmp_path_factory, {"TABPY_WORKERS": "2"})


@pytest.fixture(scope="module")
def deployed(server: ServerProcess) -> ServerProcess:
    with client_for(server) as client:
        client.deploy("add", add, "Adds two lists", schema={"input": {"type": "object"}})
    return server


def test_list_and_get_shapes(deployed: ServerProcess) -> None:
    listing = deployed.http.get("/endpoints")
    assert listing.status_code == 200
    assert listing.headers["content-type"] == "application/json"
    info = listing.json()["add"]
    assert list(info) == INFO_KEYS
    assert info["description"] == "Adds two lists"
    assert info["docstring"] == add.__doc__  # non-ASCII and % survive verbatim
    assert info["schema"] == {"input": {"type": "object"}}
    assert (info["type"], info["version"], info["is_public"]) == ("model", 1, False)
    single = deployed.http.get("/endpoints/add")
    assert single.status_code == 200
    assert single.json() == info  # not wrapped in the name


def test_unknown_endpoint_404(server: ServerProcess) -> None:
    response = server.http.get("/endpoints/nope")
    assert response.status_code == 404
    assert response.content == envelope("Unknown endpoint", "Endpoint nope is not found")


def test_status_and_upload_destination(deployed: ServerProcess) -> None:
    status = deployed.http.get("/status").json()
    assert status["add"] == {
        "version": 1,
        "type": "model",
        "status": "LoadSuccessful",
        "last_error": None,
    }
    destination = deployed.http.get("/configurations/endpoint_upload_destination")
    assert destination.status_code == 200
    assert destination.json() == {"path": str(deployed.state_path / "staging")}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Input body cannot be empty"),
        (b"{nope", "Failed to decode input body"),
        (b"{}", "name is required to add an endpoint."),
        (b'{"name": "add", "src_path": "/tmp"}', "endpoint add already exists."),
        (
            b'{"name": "b@d", "src_path": "/tmp"}',
            "endpoint name can only contain: a-z, A-Z, 0-9, underscore, hyphens and spaces.",
        ),
        (b'{"name": "fresh"}', "src_path is required to add/update an endpoint."),
        (b'{"name": "fresh", "src_path": 5}', "src_path must be a string."),
        (b'{"name": "fresh", "src_path": "/etc"}', "Invalid source path for endpoint fresh"),
        (b'{"name": "fresh", "artifact": "xyz"}', None),
        (b'{"name": "fresh", "artifact": "' + b"0" * 64 + b'"}', "artifact 0000"),
        (
            b'{"name": "fresh", "artifact": "' + b"0" * 64 + b'", "dependencies": "x"}',
            "Error when changing TabPy state: dependencies must be a list.",
        ),
        (b'{"name": "fresh", "is_public": "yes", "src_path": "x"}', "is_public must be"),
    ],
)
def test_create_rejects_bad_input(
    deployed: ServerProcess, body: bytes, message: str | None
) -> None:
    response = deployed.http.post("/endpoints", content=body)
    assert response.status_code == 400, response.text
    if message is not None:
        assert response.json()["message"].startswith(message)
    assert "fresh" not in deployed.http.get("/endpoints").json()


def test_src_path_cannot_escape_staging(deployed: ServerProcess) -> None:
    escape = str(deployed.state_path / "staging" / ".." / "..")
    response = deployed.http.post("/endpoints", json={"name": "fresh", "src_path": escape})
    assert response.status_code == 400
    assert "must be inside the upload destination" in response.json()["info"]


def test_upload_integrity_check(server: ServerProcess) -> None:
    response = server.http.put("/artifacts/" + "a" * 64, content=b"not what the hash says")
    assert response.status_code == 400
    assert response.json()["message"] == "Upload integrity check failed"
    sha256 = upload(server.http, b"some bytes")
    again = server.http.put(f"/artifacts/{sha256}", content=b"some bytes")
    assert again.status_code == 200
    assert again.json() == {"sha256": sha256, "size": 10}


def test_put_changes_only_what_it_sends(server: ServerProcess) -> None:
    with client_for(server) as client:
        client.deploy("keep", add, "first", schema={"k": 1}, is_public=True)
    response = server.http.put("/endpoints/keep", json={"description": "second"})
    assert response.status_code == 200
    info = response.json()["keep"]
    assert (info["description"], info["schema"], info["is_public"]) == ("second", {"k": 1}, True)
    assert info["version"] == 1


def test_put_and_delete_unknown_endpoint(server: ServerProcess) -> None:
    for response in (
        server.http.put("/endpoints/ghost", json={"description": "x"}),
        server.http.delete("/endpoints/ghost"),
    ):
        assert response.status_code == 404
        assert response.content == envelope("endpoint ghost does not exist.")


def test_redeploy_versions_and_rollback(server: ServerProcess) -> None:
    with client_for(server) as client:
        client.deploy("which", lambda: "one", "v1")
        client.deploy("which", lambda: "two", "v2", override=True)
        assert client.query("which")["response"] == "two"
        history = server.http.get("/endpoints/which/versions").json()
        assert [entry["version"] for entry in history] == [1, 2]
        assert all(len(entry["artifact"]) == 64 for entry in history)
        rolled = server.http.post("/endpoints/which/rollback", json={"version": 1})
        assert rolled.status_code == 200
        assert rolled.json()["which"]["version"] == 3
        reply = client.query("which")
        assert (reply["response"], reply["version"]) == ("one", 3)
    assert server.http.post("/endpoints/which/rollback", json={"version": 9}).status_code == 404
    assert server.http.post("/endpoints/which/rollback", json={"v": 1}).status_code == 400


def test_override_required(server: ServerProcess) -> None:
    with client_for(server) as client:
        client.deploy("once", add)
        with pytest.raises(RuntimeError, match="already exists"):
            client.deploy("once", add)


def test_delete_unloads_and_name_can_be_reused(server: ServerProcess) -> None:
    with client_for(server) as client:
        client.deploy("temp", lambda: 1)
        assert server.http.delete("/endpoints/temp").status_code == 204
        assert server.http.post("/query/temp", json={"data": []}).status_code == 404
        assert "temp" not in server.http.get("/status").json()
        client.deploy("temp", lambda: 2)  # TabPy fails here with DownloadSkipped
        assert client.query("temp")["response"] == 2
        assert client.query("temp")["version"] == 1


def test_broken_pickles_fail_to_load_without_harm(deployed: ServerProcess) -> None:
    truncated = pickled(add)[:-10]
    response = deploy_raw(deployed.http, "truncated", truncated)
    assert response.status_code == 201
    status = deployed.http.get("/status").json()["truncated"]
    assert status["status"] == "LoadFailed"
    assert status["last_error"].startswith("Load failed: ")
    query = deployed.http.post("/query/truncated", json={"data": []})
    assert query.status_code == 500
    assert query.json()["info"]["error"].startswith("Load failed: ")
    # A pickle that needs a module the server lacks.
    missing = pickle_of_missing_module_function()
    deploy_raw(deployed.http, "needs module", missing)
    error = deployed.http.get("/status").json()["needs module"]["last_error"]
    assert "No module named 'no_such_module_x'" in error
    # The others are unaffected.
    ok = deployed.http.post("/query/add", json={"data": [[1], [2]]})
    assert ok.status_code == 200
    assert ok.json()["response"] == [3]


def pickle_of_missing_module_function() -> bytes:
    """A pickle that refers to ``no_such_module_x.f`` by name, as pickles of library code do."""
    module = types.ModuleType("no_such_module_x")
    exec("def f():\n    return 1", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        return pickle.dumps(module.f)
    finally:
        del sys.modules[module.__name__]


def test_our_client_reports_load_failure(server: ServerProcess) -> None:
    class Unpicklable:
        """Pickles fine, but unpickling it on the server raises."""

        def __call__(self) -> int:
            return 1

        def __reduce__(self) -> tuple[object, ...]:
            return (json.loads, ("{not json",))

    with client_for(server) as client, pytest.raises(RuntimeError, match="LoadFailed"):
        client.deploy("bad load", Unpicklable())


def test_client_versions_and_rollback_restore_code_and_words(server: ServerProcess) -> None:
    def first(x: int) -> str:
        """The first answer."""
        return f"first {x}"

    def second(x: int) -> str:
        """The second answer."""
        return f"second {x}"

    with client_for(server) as client:
        client.deploy("words", first, "one", schema={"v": 1})
        client.deploy("words", second, "two", schema={"v": 2}, override=True)
        history = client.versions("words")
        assert [(v["version"], v["description"], v["current"]) for v in history] == [
            (1, "one", False),
            (2, "two", True),
        ]
        assert [v["docstring"] for v in history] == ["The first answer.", "The second answer."]
        assert all(v["size"] > 0 and len(v["artifact"]) == 64 for v in history)

        assert client.rollback("words", 1) == 3
        assert client.query("words", 5)["response"] == "first 5"
        info = client.get_endpoints()["words"]
        assert (info["version"], info["description"], info["docstring"], info["schema"]) == (
            3,
            "one",
            "The first answer.",
            {"v": 1},
        )
        assert [v["current"] for v in client.versions("words")] == [False, False, True]
        client.remove("words")
