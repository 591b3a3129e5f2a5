"""``kill -9`` during deploys leaves a consistent registry that kept every acknowledged write.

A client thread deploys without pause over raw HTTP (``PUT /artifacts/<sha256>``, then
``POST /endpoints``, ``PUT /endpoints/<name>`` with ``should_update_version`` or
``POST /endpoints/<name>/rollback``) while the test SIGKILLs the server and its workers at a random
moment. After every kill the SQLite file is checked directly (read-only), the server is restarted
on the same state path, and the registry is checked again through HTTP. Each deployed function
returns its own name and version, so a query shows which object is really served.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cloudpickle
import httpx
from live_server import ServerProcess, wait_for

from tabpy.tabpy_tools.custom_query_object import CustomQueryObject

ROUNDS = 5
KILL_AFTER = (0.05, 0.4)  # seconds of deploying before the kill
MAX_ENDPOINTS = 6
STATUS_TIMEOUT = 30.0
THREAD_TIMEOUT = 30.0


@dataclass(frozen=True)
class Deploy:
    """One change sent to the server, with the version it must produce."""

    kind: str  # "create", "update" or "rollback"
    name: str
    version: int
    artifact: str
    data: bytes = field(default=b"", repr=False)  # the pickle to upload (not for a rollback)
    target: int = 0  # the version a rollback restores


@dataclass
class Snapshot:
    """What the registry holds: name -> {version: artifact}, and the current versions."""

    history: dict[str, dict[int, str]] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)

    def apply(self, deploy: Deploy) -> Snapshot:
        history = {name: dict(versions) for name, versions in self.history.items()}
        history.setdefault(deploy.name, {})[deploy.version] = deploy.artifact
        return Snapshot(history, {**self.current, deploy.name: deploy.version})


# sha256 -> (name, version) that the function in that artifact returns.
ARTIFACTS: dict[str, tuple[str, int]] = {}


def endpoint_pickle(name: str, version: int) -> tuple[str, bytes]:
    """A ``CustomQueryObject`` whose function returns ``[name, version, x]``, pickled as TabPy's
    client does; returns its SHA-256 and bytes."""
    namespace: dict[str, Any] = {"__name__": "__main__"}  # by value, as from a deploy script
    exec(f"def which(x):\n    return [{name!r}, {version}, x]\n", namespace)
    data = cloudpickle.dumps(CustomQueryObject(query=namespace["which"], description=f"v{version}"))
    sha256 = hashlib.sha256(data).hexdigest()
    ARTIFACTS[sha256] = (name, version)
    return sha256, data


class Deployer(threading.Thread):
    """Deploys until the server disappears; records what the server acknowledged."""

    def __init__(self, url: str, start: Snapshot, round_number: int, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.state = start
        self.round = round_number
        self.rng = rng
        self.acknowledged: list[Deploy] = []
        self.in_flight: Deploy | None = None
        self.failure: str | None = None
        self.started_deploying = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=THREAD_TIMEOUT) as http:
            self.started_deploying.set()
            try:
                while True:
                    self._deploy_one(http)
            except httpx.TransportError:
                return  # the server was killed: expected
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.failure = f"{type(exc).__name__}: {exc}"

    def _deploy_one(self, http: httpx.Client) -> None:
        deploy = self._next()
        self.in_flight = deploy
        if deploy.kind == "rollback":
            reply = http.post(
                f"/endpoints/{quote(deploy.name)}/rollback", json={"version": deploy.target}
            )
        else:
            upload = http.put(f"/artifacts/{deploy.artifact}", content=deploy.data)
            if upload.status_code not in (200, 201):
                raise AssertionError(f"upload: {upload.status_code} {upload.text}")
            body = {"artifact": deploy.artifact, "description": f"v{deploy.version}"}
            if deploy.kind == "create":
                reply = http.post("/endpoints", json={"name": deploy.name, **body})
            else:
                reply = http.put(
                    f"/endpoints/{quote(deploy.name)}",
                    json={**body, "should_update_version": True},
                )
        expected = 201 if deploy.kind == "create" else 200
        if reply.status_code != expected:
            raise AssertionError(f"{deploy}: {reply.status_code} {reply.text}")
        answered = reply.json()[deploy.name]["version"]
        if answered != deploy.version:
            raise AssertionError(f"{deploy}: the server answered version {answered}")
        self.acknowledged.append(deploy)
        self.state = self.state.apply(deploy)
        self.in_flight = None

    def _next(self) -> Deploy:
        names = sorted(self.state.current)
        choice = self.rng.random()
        if not names or (choice < 0.25 and len(names) < MAX_ENDPOINTS):
            name = f"ep_{self.round}_{len(names)}"
            return Deploy("create", name, 1, *endpoint_pickle(name, 1))
        name = self.rng.choice(names)
        version = self.state.current[name] + 1
        if choice > 0.85 and version > 2:
            target = self.rng.randrange(1, version - 1)
            artifact = self.state.history[name][target]
            return Deploy("rollback", name, version, artifact, target=target)
        return Deploy("update", name, version, *endpoint_pickle(name, version))


def read_registry_file(db: Path) -> Snapshot:
    """Check the SQLite file's invariants (read-only) and return its content."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        revision = conn.execute("SELECT value FROM tabpy_meta WHERE key = 'revision'").fetchone()
        assert revision is not None and int(revision[0]) >= 0
        artifacts = {}
        for sha256, size, data in conn.execute("SELECT sha256, size, data FROM tabpy_artifacts"):
            assert hashlib.sha256(data).hexdigest() == sha256, f"artifact {sha256} is corrupt"
            assert size == len(data)
            artifacts[sha256] = data
        current = dict(conn.execute("SELECT name, version FROM tabpy_endpoints"))
        history: dict[str, dict[int, str]] = {}
        for name, version, artifact in conn.execute(
            "SELECT name, version, artifact FROM tabpy_versions"
        ):
            history.setdefault(name, {})[version] = artifact
    assert set(history) == set(current), "versions without endpoint, or endpoint without versions"
    for name, version in current.items():
        # Contiguous: every change adds the next number (a rollback too), none is lost.
        assert sorted(history[name]) == list(range(1, version + 1)), (name, history[name])
        for number, artifact in history[name].items():
            assert artifact in artifacts, f"{name} v{number}: artifact {artifact} is missing"
            made_for, made_version = ARTIFACTS[artifact]
            assert made_for == name
            # Its own function, or (rollback) the function of the earlier version it restored.
            assert history[name][made_version] == artifact, (name, number, made_version)
    return Snapshot(history, current)


def check_served(server: ServerProcess, registry: Snapshot, round_number: int) -> None:
    """The restarted server lists, loads and serves exactly what the file holds."""
    listed = server.http.get("/endpoints").json()
    assert {name: info["version"] for name, info in listed.items()} == registry.current
    for name, versions in registry.history.items():
        reply = server.http.get(f"/endpoints/{quote(name)}/versions")
        assert reply.status_code == 200, reply.text
        assert {v["version"]: v["artifact"] for v in reply.json()} == versions

    def all_loaded() -> dict[str, Any] | None:
        status = server.http.get("/status").json()
        if any(entry["status"] == "LoadInProgress" for entry in status.values()):
            return None
        return status

    status = wait_for(all_loaded, STATUS_TIMEOUT, "every endpoint to finish loading")
    assert {name: (e["version"], e["status"]) for name, e in status.items()} == {
        name: (version, "LoadSuccessful") for name, version in registry.current.items()
    }, status
    for name, version in registry.current.items():
        reply = server.http.post(f"/query/{quote(name)}", json={"data": [round_number]})
        assert reply.status_code == 200, reply.text
        made_for, made_version = ARTIFACTS[registry.history[name][version]]
        assert reply.json()["response"] == [made_for, made_version, round_number]
        assert reply.json()["version"] == version


def kill_hard(server: ServerProcess) -> None:
    """SIGKILL the server's process group and every worker (they run in their own sessions)."""
    server.kill()
    assert server.process is not None and server.process.returncode == -9


def test_kill_9_while_deploying_keeps_the_registry_consistent_and_durable(
    tmp_path: Path, launch: Callable[..., ServerProcess]
) -> None:
    seed = time.time_ns()
    rng = random.Random(seed)
    state = tmp_path / "state"
    state.mkdir()
    settings = {"TABPY_STATE_PATH": str(state), "TABPY_WORKERS": "1"}
    db = state / "registry.db"
    known = Snapshot()
    total_acknowledged = 0

    server = launch(settings).wait_until_warm()
    for round_number in range(ROUNDS):
        where = f"round {round_number} (seed {seed})"
        deployer = Deployer(server.url, known, round_number, random.Random(rng.random()))
        deployer.start()
        assert deployer.started_deploying.wait(THREAD_TIMEOUT)
        # Not a synchronisation: the random moment of the crash is the point of the test.
        time.sleep(rng.uniform(*KILL_AFTER))
        kill_hard(server)
        deployer.join(THREAD_TIMEOUT)
        assert not deployer.is_alive(), where
        assert deployer.failure is None, f"{where}: {deployer.failure}"
        total_acknowledged += len(deployer.acknowledged)

        # The file as the crash left it: consistent, every acknowledged deploy in it, and at most
        # the one deploy in flight beyond them.
        found = read_registry_file(db)
        acknowledged = deployer.state
        allowed = [acknowledged]
        if deployer.in_flight is not None:
            allowed.append(acknowledged.apply(deployer.in_flight))
        assert found in allowed, f"{where}: {found} is none of {allowed}"

        server = launch(settings)
        assert read_registry_file(db) == found, f"{where}: the restart changed the registry"
        check_served(server, found, round_number)
        known = found

    assert total_acknowledged >= ROUNDS, f"too few deploys acknowledged (seed {seed})"
    assert sum(len(versions) for versions in known.history.values()) >= total_acknowledged
