"""Starting on a TabPy 2.16 state folder: its endpoints are imported once, on first start.

The folder is built by hand exactly as TabPy leaves it: ``state.ini`` with one JSON line per
endpoint and a docstring section, and ``query_objects/<name>/<version>/pickle_archive`` files
holding cloudpickle dumps of ``CustomQueryObject`` around functions defined in ``__main__`` (so the
function travels by value, as from a deploy script or a notebook). The server must import it on
first start, serve it, never touch the old files, and never import it a second time.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cloudpickle
import pytest
from live_server import ServerProcess, wait_for

from tabpy.registry.fleet_settings import SYNCED_FILE
from tabpy.tabpy_tools.custom_query_object import CustomQueryObject

SENTIMENT = "Sentiment Analysis"
STATUS_TIMEOUT = 30.0

# name -> the state.ini JSON line TabPy wrote (keys in TabPy's order).
LEGACY_INFO: dict[str, dict[str, Any]] = {
    "add": {
        "description": "Adds two numbers x and y",
        "type": "model",
        "version": 2,
        "dependencies": [],
        "target": None,
        "creation_time": 1795828910,
        "last_modified_time": 1795828921,
        "schema": "{'input': {'type': 'object', 'properties': {'x': {'type': 'integer'}, "
        "'y': {'type': 'integer'}}, 'required': ['x', 'y']}, 'sample': {'x': 3, 'y': 2}, "
        "'output': {'type': 'integer'}}",
        "is_public": True,
    },
    SENTIMENT: {
        "description": "Scores texts between -1 and 1",
        "type": "model",
        "version": 1,
        "dependencies": [],
        "target": None,
        "creation_time": 1795828930,
        "last_modified_time": 1795828930,
        "schema": None,
        "is_public": False,
    },
    "broken": {
        "description": "Its pickle folder was deleted by hand",
        "type": "model",
        "version": 3,
        "dependencies": [],
        "target": None,
        "creation_time": 1795828940,
        "last_modified_time": 1795828950,
        "schema": None,
        "is_public": False,
    },
}
DOCSTRINGS = {
    "add": "Adds two numbers.",
    # A multi-line docstring: TabPy writes continuation lines indented with a tab.
    SENTIMENT: "Scores each text.\nReturns one number per text.",
    "broken": "-- no docstring found in query function --",
}

# (name, version) -> source of the function deployed there; each returns something that tells
# which version answered.
FUNCTIONS = {
    ("add", 1): 'def add(x, y):\n    """Adds two numbers."""\n    return x + y\n',
    ("add", 2): 'def add(x, y):\n    """Adds two numbers."""\n    return x + y + 1000\n',
    (SENTIMENT, 1): (
        "def score(texts):\n"
        '    """Scores each text.\n    Returns one number per text."""\n'
        '    return [1.0 if "good" in t else -1.0 for t in texts]\n'
    ),
}


def main_function(source: str) -> Callable[..., Any]:
    """Define ``source`` as if typed in a deploy script, so cloudpickle stores it by value."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<deploy script>", "exec"), namespace)
    return next(v for k, v in namespace.items() if k != "__name__" and callable(v))


def legacy_pickle(source: str, description: str) -> bytes:
    """What TabPy 2.16's ``Client.deploy`` writes to ``pickle_archive``."""
    obj = CustomQueryObject(query=main_function(source), description=description)
    return cloudpickle.dumps(obj)


def state_ini_text() -> str:
    """``state.ini`` as TabPy's writer leaves it (``key = value``, tab-indented continuations)."""
    lines = [
        "[Service Info]",
        "Name = Legacy TabPy",
        "Description = ",
        "Creation Time = 1795828900",
        "Access-Control-Allow-Origin = ",
        "Access-Control-Allow-Headers = ",
        "Access-Control-Allow-Methods = ",
        "",
        "[Query Objects Service Versions]",
        *(f"{name} = {json.dumps(info)}" for name, info in LEGACY_INFO.items()),
        "",
        "[Query Objects Docstrings]",
        *(f"{name} = {doc.replace(chr(10), chr(10) + chr(9))}" for name, doc in DOCSTRINGS.items()),
        "",
        "[Meta]",
        "Revision Number = 7",
        "",
    ]
    return "\n".join(lines) + "\n"


def build_legacy_state(state: Path) -> dict[tuple[str, int], bytes]:
    """Write a TabPy 2.16 state folder; returns the pickle bytes per (name, version)."""
    state.mkdir()
    (state / "state.ini").write_text(state_ini_text(), encoding="utf-8")
    pickles = {}
    for (name, version), source in FUNCTIONS.items():
        data = legacy_pickle(source, LEGACY_INFO[name]["description"])
        pickles[name, version] = data
        for tree in ("query_objects", "staging/endpoints"):
            folder = state / tree / name / str(version)
            folder.mkdir(parents=True)
            (folder / "pickle_archive").write_bytes(data)
    # Not a version folder: ignored by the import, and left alone like everything else.
    (state / "query_objects" / "README").write_text("left by an admin\n", encoding="utf-8")
    # "broken": listed in state.ini, but query_objects/broken/ does not exist.
    return pickles


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def query(server: ServerProcess, name: str, data: Any) -> Any:
    return server.http.post(f"/query/{quote(name)}", json={"data": data})


def settled_status(server: ServerProcess, expected: dict[str, int]) -> dict[str, Any]:
    """``/status`` once every expected endpoint has finished loading its expected version."""

    def settled() -> dict[str, Any] | None:
        status = server.http.get("/status").json()
        for name, version in expected.items():
            entry = status.get(name)
            if entry is None or entry["version"] != version:
                return None
            if entry["status"] == "LoadInProgress":
                return None
        return status

    return wait_for(settled, STATUS_TIMEOUT, f"/status to settle at {expected}")


def registry_rows(state: Path) -> dict[str, Any]:
    """The registry's content, read directly from the SQLite file (read-only)."""
    with sqlite3.connect(f"file:{state / 'registry.db'}?mode=ro", uri=True) as db:
        return {
            "endpoints": db.execute(
                "SELECT name, version, description, creation_time FROM tabpy_endpoints "
                "ORDER BY name"
            ).fetchall(),
            "versions": db.execute(
                "SELECT name, version, artifact, created_at FROM tabpy_versions "
                "ORDER BY name, version"
            ).fetchall(),
            "artifacts": db.execute(
                "SELECT sha256, size FROM tabpy_artifacts ORDER BY sha256"
            ).fetchall(),
            "imported": db.execute(
                "SELECT value FROM tabpy_meta WHERE key = 'legacy_state_imported'"
            ).fetchall(),
            "revision": db.execute(
                "SELECT value FROM tabpy_meta WHERE key = 'revision'"
            ).fetchall(),
        }


def stop(server: ServerProcess) -> None:
    """A clean shutdown, so the next start opens the registry the normal way."""
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr.text


@pytest.fixture
def legacy(tmp_path: Path) -> Iterator[tuple[Path, dict[tuple[str, int], bytes]]]:
    state = tmp_path / "tabpy-2.16-state"
    yield state, build_legacy_state(state)


def test_legacy_state_is_imported_once_served_and_left_untouched(
    launch: Callable[..., ServerProcess],
    legacy: tuple[Path, dict[tuple[str, int], bytes]],
) -> None:
    state, pickles = legacy
    before = file_hashes(state)
    settings = {"TABPY_STATE_PATH": str(state), "TABPY_WORKERS": "2"}

    # --- first start: the import -----------------------------------------------------------------
    server = launch(settings)
    log = server.stderr.text
    assert f"Imported 3 endpoint(s) from {state}: add, {SENTIMENT}, broken" in log, log
    # The admin is told which file was missing.
    assert str(state / "query_objects" / "broken" / "3" / "pickle_archive") in log, log
    assert server.http.get("/info").json()["name"] == "Legacy TabPy"

    endpoints = server.http.get("/endpoints").json()
    assert endpoints == {
        name: {**info, "docstring": DOCSTRINGS[name]} for name, info in LEGACY_INFO.items()
    }
    one = server.http.get(f"/endpoints/{quote(SENTIMENT)}")
    assert one.status_code == 200
    assert one.json() == {**LEGACY_INFO[SENTIMENT], "docstring": DOCSTRINGS[SENTIMENT]}

    status = settled_status(server, {"add": 2, SENTIMENT: 1, "broken": 3})
    assert status["add"] == {
        "version": 2,
        "type": "model",
        "status": "LoadSuccessful",
        "last_error": None,
    }
    assert status[SENTIMENT]["status"] == "LoadSuccessful"
    broken = status["broken"]
    assert (broken["status"], broken["version"], broken["type"]) == ("LoadFailed", 3, "model")
    # Helpful: it names the endpoint and version, what is wrong and what to do.
    assert broken["last_error"].startswith("Load failed: "), broken["last_error"]
    for part in ("broken version 3", "missing", "pickle_archive", "deploy broken again"):
        assert part in broken["last_error"], broken["last_error"]

    # --- serving the imported functions ----------------------------------------------------------
    reply = query(server, "add", {"x": 1, "y": 2})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["response"], body["version"], body["model"]) == (1003, 2, "add")
    reply = query(server, "add", [5, 6])  # a JSON array is passed positionally
    assert (reply.status_code, reply.json()["response"]) == (200, 1011)
    reply = query(server, SENTIMENT, [["a good day", "a bad day"]])
    assert reply.status_code == 200, reply.text
    assert (reply.json()["response"], reply.json()["model"]) == ([1.0, -1.0], SENTIMENT)
    reply = query(server, "broken", [])
    assert reply.status_code == 500, reply.text
    assert reply.json()["info"]["uri"] == "broken"
    assert "broken version 3 is missing" in reply.json()["info"]["error"], reply.text
    # The broken endpoint does not affect the others.
    assert query(server, "add", [0, 0]).json()["response"] == 1000

    # --- both versions were imported, with the exact bytes ---------------------------------------
    versions = server.http.get("/endpoints/add/versions")
    assert versions.status_code == 200, versions.text
    sha = {key: hashlib.sha256(data).hexdigest() for key, data in pickles.items()}
    assert [(v["version"], v["artifact"], v["size"]) for v in versions.json()] == [
        (1, sha["add", 1], len(pickles["add", 1])),
        (2, sha["add", 2], len(pickles["add", 2])),
    ]
    assert [
        v["version"] for v in server.http.get(f"/endpoints/{quote(SENTIMENT)}/versions").json()
    ] == [1]

    # --- rollback to version 1 serves version 1's function ---------------------------------------
    reply = server.http.post("/endpoints/add/rollback", json={"version": 1})
    assert reply.status_code == 200, reply.text
    assert reply.json()["add"]["version"] == 3
    settled_status(server, {"add": 3})
    answer = wait_for(
        lambda: (r := query(server, "add", [1, 2]).json())["version"] == 3 and r,
        STATUS_TIMEOUT,
        "the rolled-back version to be served",
    )
    assert answer["response"] == 3  # version 1's function: no + 1000
    history = server.http.get("/endpoints/add/versions").json()
    assert [(v["version"], v["artifact"]) for v in history] == [
        (1, sha["add", 1]),
        (2, sha["add", 2]),
        (3, sha["add", 1]),
    ]

    # --- changes made after the import: a new endpoint, a deleted legacy one ---------------------
    new_source = "def triple(x):\n    return 3 * x\n"
    new_pickle = legacy_pickle(new_source, "deployed after the import")
    new_sha = hashlib.sha256(new_pickle).hexdigest()
    assert server.http.put(f"/artifacts/{new_sha}", content=new_pickle).status_code == 201
    created = server.http.post(
        "/endpoints",
        json={"name": "triple", "description": "deployed after the import", "artifact": new_sha},
    )
    assert created.status_code == 201, created.text
    assert server.http.delete("/endpoints/broken").status_code == 204
    settled_status(server, {"triple": 1})
    assert query(server, "triple", [7]).json()["response"] == 21

    endpoints_before_restart = server.http.get("/endpoints").json()
    assert set(endpoints_before_restart) == {"add", SENTIMENT, "triple"}
    stop(server)
    rows_before_restart = registry_rows(state)
    assert file_hashes(state).items() >= before.items()  # nothing changed or removed

    # --- second start: no second import ----------------------------------------------------------
    server = launch(settings)
    assert "Imported" not in server.stderr.text
    assert registry_rows(state) == rows_before_restart  # same rows, same revision, same stamp
    assert server.http.get("/endpoints").json() == endpoints_before_restart
    status = settled_status(server, {"add": 3, SENTIMENT: 1, "triple": 1})
    assert "broken" not in status  # deleted after the import: the import did not bring it back
    assert all(entry["status"] == "LoadSuccessful" for entry in status.values()), status
    body = query(server, "add", [1, 2]).json()
    assert (body["response"], body["version"]) == (3, 3)  # still the rollback
    assert query(server, SENTIMENT, [["good"]]).json()["response"] == [1.0]
    assert query(server, "triple", [2]).json()["response"] == 6
    assert query(server, "broken", []).status_code == 404
    stop(server)

    # --- the TabPy files are byte for byte what they were ---------------------------------------
    after = file_hashes(state)
    assert {path: after.get(path) for path in before} == before
    new_files = set(after) - set(before)
    # Ours: the registry, and the digest of the [Service Info] values shared with the fleet.
    ours = ("registry.db", SYNCED_FILE)
    assert all(path.startswith(ours) for path in new_files), new_files
