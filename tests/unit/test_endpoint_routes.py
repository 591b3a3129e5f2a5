"""The endpoint routes in-process: Starlette's TestClient, a real SQLite registry, no workers.

Load checks go to a stand-in pool that reports every load as successful, so these tests cover
the HTTP contract and the registry, not unpickling (the integration tests do that).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tabpy.config import load_settings
from tabpy.registry.deploy_request import PICKLE_FILE
from tabpy.registry.endpoint import DEFAULT_DOCSTRING, MAX_NAME_LENGTH, Endpoint
from tabpy.registry.service_info import ServiceInfo
from tabpy.registry.store import Registry, insert_endpoint
from tabpy.runtime.catalog import Catalog
from tabpy.runtime.pool import PoolOptions, WorkerPool
from tabpy.security.authenticator import build_authenticator
from tabpy.server.app import create_app
from tabpy.server.context import ServerContext

VERSION_KEYS = [
    "version",
    "artifact",
    "size",
    "created_at",
    "description",
    "docstring",
    "schema",
    "current",
    "requirements",
]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    yield registry
    registry.close()


@pytest.fixture
def client(tmp_path: Path, registry: Registry) -> Iterator[TestClient]:
    settings = load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)})
    info = ServiceInfo("TabPy Server", "", "0", "", "", "", "")
    # A real pool: the catalog's load check of each deployed version runs in its worker.
    pool = WorkerPool(PoolOptions(size=1))
    context = ServerContext(
        settings,
        info,
        pool=pool,
        catalog=Catalog(registry, pool),
        auth=build_authenticator(settings),
    )
    with TestClient(create_app(context)) as test_client:
        yield test_client


def upload(client: TestClient, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    response = client.put(f"/artifacts/{sha256}", content=data)
    assert response.status_code in (200, 201), response.text
    return sha256


def pickled(tag: bytes) -> bytes:
    """An object the workers can load (the catalog checks that each version loads)."""
    return pickle.dumps(tag)


def deploy(client: TestClient, name: str, data: bytes, **fields: Any) -> dict[str, Any]:
    response = client.post(
        "/endpoints", json={"name": name, "artifact": upload(client, pickled(data)), **fields}
    )
    assert response.status_code == 201, response.text
    info: dict[str, Any] = response.json()[name]
    return info


def redeploy(client: TestClient, name: str, data: bytes, **fields: Any) -> dict[str, Any]:
    body = {"artifact": upload(client, pickled(data)), "should_update_version": True, **fields}
    response = client.put(f"/endpoints/{name}", json=body)
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()[name]
    return info


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["message"]


# --- create, read, update, delete ----------------------------------------------------------------


def test_create_list_and_get(client: TestClient) -> None:
    created = deploy(client, "add", b"v1", description="Adds", schema={"s": 1}, is_public=True)
    assert (created["version"], created["description"], created["schema"]) == (1, "Adds", {"s": 1})
    assert created["docstring"] == DEFAULT_DOCSTRING
    listing = client.get("/endpoints")
    assert listing.headers["content-type"] == "application/json"
    assert listing.json() == {"add": created}
    assert client.get("/endpoints/add").json() == created
    assert client.get("/status").json()["add"]["status"] == "LoadSuccessful"


def test_put_changes_only_what_it_sends(client: TestClient) -> None:
    deploy(client, "keep", b"v1", description="first", schema={"k": 1}, is_public=True)
    response = client.put("/endpoints/keep", json={"description": "second"})
    assert response.status_code == 200
    info = response.json()["keep"]
    assert (info["description"], info["schema"], info["is_public"], info["version"]) == (
        "second",
        {"k": 1},
        True,
        1,
    )


def test_create_refusals(client: TestClient) -> None:
    deploy(client, "add", b"v1")
    assert error(client.post("/endpoints", content=b"")) == (400, "Input body cannot be empty")
    assert error(client.post("/endpoints", content=b"[1]")) == (
        400,
        "Input body must be a JSON object",
    )
    assert error(client.post("/endpoints", json={"name": "add", "artifact": "x"})) == (
        400,
        "endpoint add already exists.",
    )
    missing = "0" * 64
    assert error(client.post("/endpoints", json={"name": "new", "artifact": missing})) == (
        400,
        f"artifact {missing} has not been uploaded.",
    )
    assert list(client.get("/endpoints").json()) == ["add"]


def test_deeply_nested_json_is_a_400_not_a_crash(client: TestClient) -> None:
    body = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, message = error(client.post("/endpoints", content=body))
    assert (status, message) == (400, "Failed to decode input body")


def test_names_are_limited_in_length_with_a_clear_message(client: TestClient) -> None:
    longest = "n" * MAX_NAME_LENGTH
    assert deploy(client, longest, b"v1")["version"] == 1
    response = client.post(
        "/endpoints", json={"name": longest + "n", "artifact": upload(client, b"x")}
    )
    assert error(response) == (
        400,
        f"endpoint name is {MAX_NAME_LENGTH + 1} characters long; the limit is "
        f"{MAX_NAME_LENGTH}. Choose a shorter name.",
    )
    assert list(client.get("/endpoints").json()) == [longest]
    assert client.delete(f"/endpoints/{longest}").status_code == 204


def test_text_that_postgresql_cannot_store_is_refused_on_sqlite_too(client: TestClient) -> None:
    response = client.post(
        "/endpoints", json={"name": "n", "artifact": upload(client, b"x"), "description": "\x00"}
    )
    assert error(response) == (400, "description must not contain the NUL character (\\u0000).")


def test_deploy_from_the_staging_folder(client: TestClient, tmp_path: Path) -> None:
    folder = tmp_path / "staging" / "endpoints" / "staged" / "1"
    folder.mkdir(parents=True)
    (folder / PICKLE_FILE).write_bytes(b"staged pickle")
    response = client.post("/endpoints", json={"name": "staged", "src_path": str(folder)})
    assert response.status_code == 201, response.text
    versions = client.get("/endpoints/staged/versions").json()
    assert versions[0]["artifact"] == hashlib.sha256(b"staged pickle").hexdigest()
    assert client.delete("/endpoints/staged").status_code == 204
    assert not folder.exists()  # the staged copy goes with the endpoint


def test_delete_and_unknown_names(client: TestClient) -> None:
    deploy(client, "temp", b"v1")
    assert client.delete("/endpoints/temp").status_code == 204
    for response in (
        client.delete("/endpoints/temp"),
        client.put("/endpoints/temp", json={"description": "x"}),
        client.get("/endpoints/temp/versions"),
        client.post("/endpoints/temp/rollback", json={"version": 1}),
    ):
        assert error(response) == (404, "endpoint temp does not exist.")
    assert client.get("/endpoints/temp").json() == {
        "message": "Unknown endpoint",
        "info": "Endpoint temp is not found",
    }


def test_an_over_long_name_from_older_code_can_still_be_removed(
    client: TestClient, registry: Registry
) -> None:
    # Older servers accepted any length; such a name may not fit in a URL, so DELETE
    # /endpoints takes it in the body.
    name = "n" * 100_000
    endpoint = Endpoint(name, "model", 1, "", "", None, False, [], None, 0, 0)
    with registry.transaction() as conn:
        insert_endpoint(conn, endpoint, {1: None})
    assert error(client.post("/endpoints", json={"name": name, "artifact": "0" * 64}))[0] == 400
    response = client.request("DELETE", "/endpoints", json={"name": name})
    assert response.status_code == 204, response.text
    assert registry.snapshot()[1] == {}
    assert error(client.request("DELETE", "/endpoints", json={"name": name}))[0] == 404
    assert error(client.request("DELETE", "/endpoints", json={"nom": name})) == (
        400,
        'Send {"name": "<endpoint name>"}, or use DELETE /endpoints/<name>.',
    )


# --- versions and rollback ---------------------------------------------------------------------


def test_versions_list_what_each_version_said_and_which_is_current(client: TestClient) -> None:
    deploy(client, "which", b"v1", description="one", docstring="Doc one.", schema={"v": 1})
    redeploy(client, "which", b"v2", description="two", docstring="Doc two.", schema={"v": 2})
    versions = client.get("/endpoints/which/versions").json()
    assert [list(v) for v in versions] == [VERSION_KEYS, VERSION_KEYS]
    assert [
        (v["version"], v["description"], v["docstring"], v["schema"], v["current"])
        for v in versions
    ] == [(1, "one", "Doc one.", {"v": 1}, False), (2, "two", "Doc two.", {"v": 2}, True)]
    assert [v["artifact"] for v in versions] == [
        hashlib.sha256(pickled(b"v1")).hexdigest(),
        hashlib.sha256(pickled(b"v2")).hexdigest(),
    ]
    assert [v["size"] for v in versions] == [len(pickled(b"v1")), len(pickled(b"v2"))]
    assert all(isinstance(v["created_at"], int) for v in versions)


def test_rollback_restores_the_code_description_docstring_and_schema(client: TestClient) -> None:
    deploy(client, "which", b"v1", description="one", docstring="Doc one.", schema={"v": 1})
    redeploy(client, "which", b"v2", description="two", docstring="Doc two.", schema=None)
    response = client.post("/endpoints/which/rollback", json={"version": 1})
    assert response.status_code == 200, response.text
    info = response.json()["which"]
    assert (info["version"], info["description"], info["docstring"], info["schema"]) == (
        3,
        "one",
        "Doc one.",
        {"v": 1},
    )
    assert client.get("/endpoints/which").json() == info
    versions = client.get("/endpoints/which/versions").json()
    assert [(v["version"], v["current"]) for v in versions] == [(1, False), (2, False), (3, True)]
    assert versions[2]["artifact"] == versions[0]["artifact"]
    assert versions[2]["description"] == "one"
    # Rolling forward again restores version 2's words, its null schema included.
    forward = client.post("/endpoints/which/rollback", json={"version": 2}).json()["which"]
    assert (forward["version"], forward["description"], forward["schema"]) == (4, "two", None)


def test_a_field_change_is_remembered_by_the_current_version(client: TestClient) -> None:
    deploy(client, "which", b"v1", description="one")
    client.put("/endpoints/which", json={"description": "one, corrected"})
    redeploy(client, "which", b"v2", description="two")
    restored = client.post("/endpoints/which/rollback", json={"version": 1}).json()["which"]
    assert restored["description"] == "one, corrected"


def test_rollback_refusals(client: TestClient) -> None:
    deploy(client, "which", b"v1")
    assert error(client.post("/endpoints/which/rollback", json={"version": 9})) == (
        404,
        "endpoint which has no version 9.",
    )
    assert error(client.post("/endpoints/which/rollback", json={"v": 1}))[0] == 400


def test_replies_are_tabpys_bytes(client: TestClient) -> None:
    created = client.post("/endpoints", json={"name": "a", "artifact": upload(client, b"x")})
    assert created.headers["content-type"] == "application/json; charset=UTF-8"
    assert json.loads(created.content) == {"a": client.get("/endpoints/a").json()}
