"""A fleet builds one environment per spec: the first resolution, recorded in the registry.

Real servers as subprocesses on ephemeral ports, each with its own state path (its own
environment cache), sharing one SQLite registry file. An unpinned spec could resolve
differently on each instance (a release between two resolutions); the registry's record makes
the first resolution the one every instance, and every restart, builds.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from live_server import ServerProcess, wait_for

from tabpy.tabpy_tools.client import Client
from tests.components import require_envs

pytestmark = pytest.mark.envs

BUILD_TIMEOUT = 180
RESOLVED = "Resolving requirements"


@pytest.fixture(scope="module", autouse=True)
def _uv() -> None:
    require_envs()


def settings(registry: str, instance_id: str) -> dict[str, str]:
    return {
        "TABPY_REGISTRY_URL": registry,
        "TABPY_INSTANCE_ID": instance_id,
        "TABPY_MEMBER_HEARTBEAT_SECONDS": "0.3",
        "TABPY_WORKERS": "1",
    }


def one() -> int:
    return 1


def two() -> int:
    return 2


def ready_key(server: ServerProcess, name: str) -> str:
    """The key of ``name``'s environment on ``server`` once it loaded there."""

    def key() -> str | None:
        entry = server.http.get("/status").json().get(name, {})
        environment = entry.get("environment", {})
        assert entry.get("status") != "LoadFailed", entry
        if entry.get("status") == "LoadSuccessful" and environment.get("phase") == "ready":
            return str(environment["key"])
        return None

    found: str = wait_for(key, BUILD_TIMEOUT, f"{name} to load with its environment")
    return found


def lock_of(server: ServerProcess, key: str) -> str:
    return (server.state_path / "environments" / key / "tabpy-lock.txt").read_text("utf-8")


def recorded(database: Path, name: str) -> dict[str, Any]:
    """The environment column of ``name``'s current version, as stored."""
    with sqlite3.connect(database) as conn:
        (text,) = conn.execute(
            "SELECT environment FROM tabpy_versions WHERE name = ? ORDER BY version DESC",
            (name,),
        ).fetchone()
    value: dict[str, Any] = json.loads(text)
    return value


def resolutions(server: ServerProcess) -> int:
    return len(re.findall(RESOLVED, server.stderr.text))


def test_instances_build_the_first_resolution_recorded_in_the_registry(
    tmp_path: Path, launch: Callable[..., ServerProcess]
) -> None:
    database = tmp_path / "shared.db"
    registry = f"sqlite:///{database}"
    a = launch(settings(registry, "a"))
    client = Client(a.url + "/", deploy_timeout=BUILD_TIMEOUT)
    client.deploy("plain", one, "no requirements")
    plain_before = a.http.get("/endpoints/plain").content
    client.deploy("unpinned", one, requirements=["six"], wait=False)
    listed_before = a.http.get("/endpoints").content

    key = ready_key(a, "unpinned")
    assert resolutions(a) == 1
    stored = recorded(database, "unpinned")
    assert stored["spec"] == ["six"]
    ((python_version, lock),) = stored["locks"].items()
    assert lock == {"lock": lock_of(a, key), "key": key}
    assert re.search(r"(?m)^six==", lock["lock"])
    # Recording the lock changed nothing a TabPy client reads.
    assert a.http.get("/endpoints/plain").content == plain_before
    assert a.http.get("/endpoints").content == listed_before
    assert a.http.get("/endpoints/unpinned").json()["requirements"] == ["six"]

    # A second instance (its own, empty cache) builds the recorded lock without resolving.
    b = launch(settings(registry, "b"))
    assert ready_key(b, "unpinned") == key
    assert lock_of(b, key) == lock["lock"]
    assert resolutions(b) == 0
    assert b.http.post("/query/unpinned", json={"data": {}}).json()["response"] == 1

    # Both running: a new spec deployed on b resolves once, and a builds the same key.
    Client(b.url + "/", deploy_timeout=BUILD_TIMEOUT).deploy(
        "ranged", two, requirements=["six>=1.10"]
    )
    ranged = ready_key(b, "ranged")
    assert ready_key(a, "ranged") == ranged
    assert lock_of(a, ranged) == lock_of(b, ranged)
    assert recorded(database, "ranged")["locks"][python_version]["key"] == ranged

    # A restart of a, on a fresh state path, resolves nothing either.
    a.kill()
    again = launch(settings(registry, "a"))
    assert ready_key(again, "unpinned") == key
    assert ready_key(again, "ranged") == ranged
    assert resolutions(again) == 0
