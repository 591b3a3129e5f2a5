"""``kill -9`` during deploys leaves no change without its audit entry and no entry without
its change.

The deploy loop, the kill and the registry checks are the registry durability test's
(``test_registry_durability``); on top of them, after every kill the SQLite file's audit trail
must match its versions exactly: each version of each endpoint has one ``allowed`` entry (a
deploy, an update or a rollback that made it), and no such entry names a version that is not
there. The server runs with Basic authentication and ``TABPY_AUTHZ = on``, so the deployer's
ownership is checked in the same transactions.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from live_server import ServerProcess, clean_environment
from test_registry_durability import (
    KILL_AFTER,
    THREAD_TIMEOUT,
    Deployer,
    Snapshot,
    check_served,
    kill_hard,
    read_registry_file,
)

from tabpy.security.passwords import legacy_hash

ROUNDS = 3
USER, PASSWORD = "deployer", "s3cret"


def audited_versions(db: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT endpoint, version, action, principal FROM tabpy_audit "
            "WHERE outcome = 'allowed' AND action IN ('deploy', 'update', 'rollback') ORDER BY id"
        ).fetchall()
    assert {row[3] for row in rows} <= {f"user:{USER}"}
    return [(name, version, action) for name, version, action, _ in rows]


def check_audit(db: Path, found: Snapshot) -> None:
    audited = audited_versions(db)
    pairs = [(name, version) for name, version, _ in audited]
    assert len(pairs) == len(set(pairs)), "a version audited twice"
    versions = {(name, v) for name, history in found.history.items() for v in history}
    assert set(pairs) == versions, set(pairs) ^ versions
    for name, version, action in audited:
        assert (action == "deploy") == (version == 1), (name, version, action)


def test_kill_9_while_deploying_keeps_changes_and_audit_entries_together(
    tmp_path: Path, launch: Callable[..., ServerProcess]
) -> None:
    seed = time.time_ns()
    rng = random.Random(seed)
    state = tmp_path / "state"
    state.mkdir()
    pwd_file = tmp_path / "passwords.txt"
    pwd_file.write_text(f"{USER} {legacy_hash(USER, PASSWORD)}\n")
    settings = {
        "TABPY_STATE_PATH": str(state),
        "TABPY_WORKERS": "1",
        "TABPY_PWD_FILE": str(pwd_file),
        "TABPY_AUTHZ": "on",
    }
    config = tmp_path / "grant.conf"
    config.write_text("[TabPy]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    # The checks also query the endpoints, and warming up runs a script.
    for role in ("deployer", "caller", "evaluator"):
        granted = subprocess.run(
            [sys.executable, "-m", "tabpy.cli.user", "grant", "--config", str(config)]
            + ["-u", USER, "--role", role],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_environment(),
        )
        assert granted.returncode == 0, granted.stderr
    db = state / "registry.db"
    client = {"auth": (USER, PASSWORD)}
    known = Snapshot()

    server = launch(settings, client=client).wait_until_warm()
    for round_number in range(ROUNDS):
        where = f"round {round_number} (seed {seed})"
        # Credentials in the URL: httpx sends them as Basic authentication.
        url = server.url.replace("://", f"://{USER}:{PASSWORD}@")
        deployer = Deployer(url, known, round_number, random.Random(rng.random()))
        deployer.start()
        assert deployer.started_deploying.wait(THREAD_TIMEOUT)
        time.sleep(rng.uniform(*KILL_AFTER))  # the random moment of the crash is the point
        kill_hard(server)
        deployer.join(THREAD_TIMEOUT)
        assert not deployer.is_alive(), where
        assert deployer.failure is None, f"{where}: {deployer.failure}"

        found = read_registry_file(db)
        check_audit(db, found)
        server = launch(settings, client=client)
        check_served(server, found, round_number)
        known = found
    assert known.history, f"nothing was deployed (seed {seed})"
