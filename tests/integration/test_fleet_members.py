"""Real servers sharing one registry as a fleet: membership, deploys that wait, one Flight.

Every server runs as a subprocess on ephemeral ports with its own ``TABPY_INSTANCE_ID``; the
registry is one SQLite file (the servers are on one machine) unless a test says otherwise.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy_support import client_for, deploy_raw, pickled
from live_server import ServerProcess, wait_for

HEARTBEAT = "0.3"  # seconds: a member is gone after 3 missed beats (0.9 s)


def fleet_settings(registry: str, instance_id: str, **extra: str) -> dict[str, str]:
    return {
        "TABPY_REGISTRY_URL": registry,
        "TABPY_INSTANCE_ID": instance_id,
        "TABPY_MEMBER_HEARTBEAT_SECONDS": HEARTBEAT,
        "TABPY_WORKERS": "1",
        **extra,
    }


def member_ids(server: ServerProcess) -> list[str]:
    response = server.http.get("/status", params={"members": "1"})
    assert response.status_code == 200, response.text
    return [member["instance_id"] for member in response.json()["members"]]


def times(n: int) -> Callable[[list[int]], list[int]]:
    """A function cloudpickle sends by value (the workers cannot import this module)."""

    def multiply(values: list[int]) -> list[int]:
        return [n * v for v in values]

    return multiply


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One SQLite file, or a PostgreSQL database (as a fleet on several hosts would use)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    from postgres_support import postgres_cluster

    with postgres_cluster() as url:
        yield url


def test_members_appear_and_a_killed_one_expires(
    registry_url: str, launch: Callable[..., ServerProcess]
) -> None:
    a = launch(fleet_settings(registry_url, "a"))
    b = launch(fleet_settings(registry_url, "b"))
    c = launch(fleet_settings(registry_url, "c"))
    wait_for(lambda: member_ids(a) == ["a", "b", "c"], 10, "three members")
    view = a.http.get("/status?members=1").json()
    assert view["instance_id"] == "a"
    by_id = {member["instance_id"]: member for member in view["members"]}
    assert by_id["b"]["http_url"].endswith(f":{b.port}")
    assert by_id["b"]["flight_url"] is None  # no Arrow Flight on these
    assert by_id["b"]["heartbeat_age_seconds"] < 5
    # TabPy's own /status body is unchanged: endpoint states only.
    assert a.http.get("/status").json() == {}

    b.send_signal(signal.SIGKILL)
    wait_for(lambda: member_ids(a) == ["a", "c"], 10, "the killed member to expire")
    c.send_signal(signal.SIGTERM)
    assert c.wait() == 0
    assert member_ids(a) == ["a"]  # a clean shutdown leaves at once


def test_a_deploy_waits_for_the_members_and_names_the_laggard(
    registry_url: str, launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    a = launch(fleet_settings(registry_url, "a", TABPY_DEPLOY_WAIT_SECONDS="2"))
    b = launch(fleet_settings(registry_url, "b")).wait_until_warm()
    a.wait_until_warm()
    wait_for(lambda: member_ids(a) == ["a", "b"], 10, "two members")

    # B's only worker is busy, so B cannot load the new version before A stops waiting.
    started_flag = tmp_path / "busy"
    script = f"import pathlib, time\npathlib.Path({str(started_flag)!r}).touch()\ntime.sleep(6)"
    busy = threading.Thread(target=b.evaluate, args=(script + "\nreturn 1",))
    busy.start()
    wait_for(started_flag.exists, 10, "B's worker to start the long script")
    started = time.monotonic()
    reply = deploy_raw(a.http, "triple", pickled(times(3)))
    waited = time.monotonic() - started
    assert reply.status_code == 201, reply.text
    assert reply.json()["triple"]["members_not_loaded"] == ["b"]
    assert 1.5 < waited < 6
    busy.join()

    # Once B is free it loads; the next change waits for it and finds everybody done.
    wait_for(
        lambda: b.http.get("/status").json().get("triple", {}).get("status") == "LoadSuccessful",
        10,
        "B to load the endpoint",
    )
    response = a.http.post("/endpoints/triple/rollback", json={"version": 1})
    assert response.status_code == 200, response.text
    assert response.json()["triple"]["members_not_loaded"] == []


def test_a_lone_instance_answers_as_tabpy(launch: Callable[..., ServerProcess]) -> None:
    server = launch({"TABPY_WORKERS": "1"}).wait_until_warm()
    with client_for(server) as client:
        client.deploy("triple", times(3))
    info = server.http.get("/endpoints/triple").json()
    assert "members_not_loaded" not in info
    response = server.http.post("/endpoints/triple/rollback", json={"version": 1})
    assert "members_not_loaded" not in response.json()["triple"]
    assert member_ids(server) == [server.http.get("/status?members=1").json()["instance_id"]]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PGHOST", raising=False)
    yield
