"""The registry schema under migrations: fresh, upgraded from b646a59, refused, raced.

SQLite always; PostgreSQL when its server binaries are installed (see ``postgres_support``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from live_server import (
    ServerProcess,
    clean_environment,
    running_server,
    wait_for,
    write_config,
)
from old_registry import (
    IMPORTED_AT,
    LONG_NAME,
    REVISION,
    build_old_registry,
    old_endpoints,
    table_rows,
)
from postgres_support import postgres_cluster

from tabpy.registry.audit import Actor, AuditQuery
from tabpy.registry.migrate import VERSION_TABLE, current_revision, head_revision
from tabpy.registry.registry_errors import RegistryTooNew, UnrecognisedRegistry
from tabpy.registry.store import Registry
from tabpy.registry.tables import metadata

OLD_VERSION_COLUMNS = ("name", "version", "artifact", "created_at")
KEPT_PER_VERSION = ("description", "docstring", "schema")
RACERS = 6
RACE_TIMEOUT = 60.0


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """One PostgreSQL cluster for the module; tests take fresh databases from it."""
    with postgres_cluster() as url:
        yield url


def fresh_database(server_url: str, name: str) -> str:
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return str(sa.engine.make_url(server_url).set(database=name))


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "registry.db")
    server = request.getfixturevalue("postgres")
    return fresh_database(server, f"t{time.time_ns()}")


def schema_differences(url: str) -> list[Any]:
    """What separates the database's tables from ``tabpy.registry.tables`` (empty: none)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        differences = compare_metadata(context, metadata)
    engine.dispose()
    return [d for d in differences if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]


# --- a new registry --------------------------------------------------------------------------


def test_a_new_registry_gets_the_newest_schema(new_url: str) -> None:
    registry = Registry(new_url)
    assert current_revision(registry.engine) == head_revision()
    assert registry.revision() == 0
    registry.close()
    assert schema_differences(new_url) == []


def test_opening_again_changes_nothing(new_url: str) -> None:
    Registry(new_url).close()
    before = table_rows(new_url)
    Registry(new_url).close()
    assert table_rows(new_url) == before


# --- a registry made by b646a59 ----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A filled registry made the b646a59 way (with the over-long name where SQLite allowed)."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "registry.db")
        build_old_registry(url, long_name=True)
    else:
        url = fresh_database(request.getfixturevalue("postgres"), f"t{time.time_ns()}")
        build_old_registry(url, long_name=False)
    return url


def test_an_old_registry_is_upgraded_in_place_losing_nothing(old_url: str) -> None:
    before = table_rows(old_url)
    registry = Registry(old_url)
    after = table_rows(old_url)

    assert current_revision(registry.engine) == head_revision()
    assert schema_differences(old_url) == []
    for table in ("tabpy_meta", "tabpy_endpoints", "tabpy_artifacts"):
        assert after[table] == before[table], table
    assert [{c: row[c] for c in OLD_VERSION_COLUMNS} for row in after["tabpy_versions"]] == (
        before["tabpy_versions"]
    )
    # Each version is given what its endpoint says now: the best record there is.
    endpoints = {row["name"]: row for row in before["tabpy_endpoints"]}
    for row in after["tabpy_versions"]:
        for field in KEPT_PER_VERSION:
            assert row[field] == endpoints[row["name"]][field], (row["name"][:20], field)

    # And the registry reads it as the old code did.
    revision, deployed = registry.snapshot()
    assert revision == REVISION
    assert registry.get_meta("legacy_state_imported") == IMPORTED_AT
    for old in old_endpoints(long_name=LONG_NAME in deployed):
        endpoint = deployed[old.name]
        assert {k: getattr(endpoint, k) for k in old.info} == old.info
        for version, data in old.versions.items():
            if data is None:
                with pytest.raises(LookupError, match="missing"):
                    registry.artifact_of(old.name, version)
            else:
                assert registry.artifact_of(old.name, version) == data
        history = registry.versions(old.name)
        assert [v.version for v in history] == sorted(old.versions)
        assert [v.current for v in history] == [
            v == old.info["version"] for v in sorted(old.versions)
        ]
        assert {v.description for v in history} == {old.info["description"]}
    registry.close()


def test_an_upgraded_old_registry_keeps_working(old_url: str) -> None:
    registry = Registry(old_url)
    restored = registry.rollback("add", 2)
    assert restored.version == 4
    assert registry.artifact_of("add", 4) == registry.artifact_of("add", 2)
    _, deployed = registry.snapshot()
    if LONG_NAME in deployed:
        # Longer than names may now be, and still removable.
        registry.delete(LONG_NAME)
        assert LONG_NAME not in registry.snapshot()[1]
    registry.delete("Sentiment Analysis")
    assert registry.revision() > REVISION
    registry.close()


def test_an_old_registry_without_its_revision_counter_gets_one(tmp_path: Path) -> None:
    # b646a59 created the tables and this row in separate transactions.
    url = sqlite_url(tmp_path / "registry.db")
    build_old_registry(url, long_name=False)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM tabpy_meta WHERE key = 'revision'")
    engine.dispose()
    registry = Registry(url)
    assert registry.revision() == 0
    registry.delete("plus")
    assert registry.revision() == 1  # the counter moves again, so other instances refresh
    registry.close()


def test_a_database_with_only_some_registry_tables_is_refused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "registry.db")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE tabpy_endpoints (name TEXT PRIMARY KEY)")
    engine.dispose()
    with pytest.raises(UnrecognisedRegistry, match="tabpy_endpoints but not tabpy_meta"):
        Registry(url)


# --- a registry newer than this code ---------------------------------------------------------


def stamp_future(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :r"), {"r": revision})
    engine.dispose()


def test_a_registry_newer_than_the_server_is_refused_untouched(new_url: str) -> None:
    Registry(new_url).close()
    stamp_future(new_url, "0099")
    before = table_rows(new_url)
    with pytest.raises(RegistryTooNew) as caught:
        Registry(new_url)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("TABPY_REGISTRY_URL: ")
    assert "revision 0099" in message and f"its newest is {head_revision()}" in message
    assert table_rows(new_url) == before


def test_the_server_refuses_a_newer_registry_with_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    url = sqlite_url(state / "registry.db")
    Registry(url).close()
    stamp_future(url, "0099")
    config = write_config(tmp_path, {"TABPY_STATE_PATH": str(state), "TABPY_PORT": "0"})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tabpy.cli.server",
            "--config",
            str(config),
            "--disable-auth-warning",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(),
    )
    assert done.returncode == 1, done.stderr
    refusal = [line for line in done.stderr.splitlines() if "0099" in line]
    assert len(refusal) == 1, done.stderr
    assert refusal[0].startswith("tabpy: TABPY_REGISTRY_URL: the registry's schema is at")
    assert "Traceback" not in done.stderr


# --- instances starting together ---------------------------------------------------------------

RACER = """
import pathlib, sys, time
url, ready, go = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
from tabpy.registry.store import Registry
from tabpy.registry.migrate import current_revision
ready.touch()
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.001)
registry = Registry(url)
print(current_revision(registry.engine), registry.revision())
"""


def race(url: str, directory: Path) -> list[str]:
    """Open the registry from several processes at the same moment; their outputs."""
    go = directory / "go"
    racers = []
    for number in range(RACERS):
        ready = directory / f"ready{number}"
        command = [sys.executable, "-c", RACER, url, str(ready), str(go)]
        racers.append((ready, subprocess.Popen(command, stdout=subprocess.PIPE, text=True)))
    wait_for(lambda: all(r.exists() for r, _ in racers), RACE_TIMEOUT, "every racer to be ready")
    go.touch()
    outputs = []
    for _, process in racers:
        out, _ = process.communicate(timeout=RACE_TIMEOUT)
        assert process.returncode == 0
        outputs.append(out.strip())
    return outputs


def test_instances_starting_together_on_a_new_registry_all_succeed(
    new_url: str, tmp_path: Path
) -> None:
    assert race(new_url, tmp_path) == [f"{head_revision()} 0"] * RACERS
    assert schema_differences(new_url) == []


def test_instances_starting_together_on_an_old_registry_all_succeed(
    old_url: str, tmp_path: Path
) -> None:
    before = table_rows(old_url)
    assert race(old_url, tmp_path) == [f"{head_revision()} {REVISION}"] * RACERS
    after = table_rows(old_url)
    assert after["tabpy_endpoints"] == before["tabpy_endpoints"]
    assert after["tabpy_artifacts"] == before["tabpy_artifacts"]
    assert len(after["tabpy_versions"]) == len(before["tabpy_versions"])


# --- a real server on an old registry ----------------------------------------------------------


def test_a_server_upgrades_an_old_registry_and_serves_it(tmp_path: Path) -> None:
    state = tmp_path / "server" / "state"
    state.mkdir(parents=True)
    url = sqlite_url(state / "registry.db")
    build_old_registry(url, long_name=True)
    assert current_revision(sa.create_engine(url)) is None
    with running_server(tmp_path / "server", {"TABPY_WORKERS": "1"}) as server:
        assert server.state_path == state.resolve()
        log = server.stderr.text
        assert "predates schema revisions: recording it as 0001" in log
        assert f"Registry schema: applied revision {head_revision()} (" in log
        assert "Context impl" not in log and "setup plugin" not in log  # Alembic's chatter
        listed = server.http.get("/endpoints").json()
        assert {n: e["version"] for n, e in listed.items() if n != LONG_NAME} == {
            "add": 3,
            "Sentiment Analysis": 1,
            "plus": 1,
            "broken": 2,
        }
        wait_until_loaded(server, "add")
        reply = server.http.post("/query/add", json={"data": {"x": [1], "y": [2]}})
        assert reply.status_code == 200, reply.text
        assert reply.json()["response"] == [3]  # version 3 is version 1's function
        versions = server.http.get("/endpoints/add/versions").json()
        assert [(v["version"], v["current"]) for v in versions] == [
            (1, False),
            (2, False),
            (3, True),
        ]
        assert {v["description"] for v in versions} == {"Adds lists, 100% très bien"}
        # The over-long name is removed through the body form of DELETE.
        removed = server.http.request("DELETE", "/endpoints", json={"name": LONG_NAME})
        assert removed.status_code == 204, removed.text
        assert LONG_NAME not in server.http.get("/endpoints").json()
    assert current_revision(sa.create_engine(url)) == head_revision()


def wait_until_loaded(server: ServerProcess, name: str) -> None:
    wait_for(
        lambda: server.http.get("/status").json()[name]["status"] == "LoadSuccessful",
        30.0,
        f"{name} to load",
    )


def test_the_fixture_pickles_are_what_the_versions_name() -> None:
    # Guards the fixture itself: versions 1 and 3 of "add" must share an artifact.
    add = next(e for e in old_endpoints(long_name=False) if e.name == "add")
    digests = {v: hashlib.sha256(d or b"").hexdigest() for v, d in add.versions.items()}
    assert digests[1] == digests[3] != digests[2]


# --- a registry at 0002 (before roles and the audit trail) ---------------------------------------


def migrate_to(url: str, revision: str) -> None:
    """Bring a b646a59 registry to ``revision`` only, as a server of that revision left it."""
    config = Config()
    config.set_main_option("script_location", str(files("tabpy.registry") / "migrations"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.stamp(config, "0001")
        command.upgrade(config, revision)
    engine.dispose()


def test_a_0002_registry_gains_roles_and_audit_losing_nothing(old_url: str) -> None:
    migrate_to(old_url, "0002")
    assert current_revision(sa.create_engine(old_url)) == "0002"
    before = table_rows(old_url)

    registry = Registry(old_url)
    assert current_revision(registry.engine) == head_revision() == "0005"
    assert schema_differences(old_url) == []
    # Every row of every 0002 table, every column; versions gain 0004's environment (null).
    after = table_rows(old_url)
    assert all(row.pop("environment") is None for row in after["tabpy_versions"])
    assert after == before
    # Nothing is owned or granted yet, and the trail starts empty.
    rules = registry.access_rules()
    assert (rules.revision, rules.grants, rules.owners, rules.callers) == (0, {}, {}, {})
    assert registry.audit(AuditQuery()) == []

    # The new tables work on the upgraded registry.
    actor = Actor("local:test")
    assert registry.grant("user:alice", "admin", actor)
    restored = registry.rollback("add", 2, actor=actor)
    assert restored.version == 4
    assert [(e.action, e.endpoint, e.version) for e in registry.audit(AuditQuery())] == [
        ("rollback", "add", 4),
        ("grant", None, None),
    ]
    registry.close()


def test_a_0003_registry_gains_version_environments_losing_nothing(old_url: str) -> None:
    """0004: every existing version keeps the default environment; new ones may name theirs."""
    migrate_to(old_url, "0003")
    before = table_rows(old_url)
    registry = Registry(old_url)
    assert current_revision(registry.engine) == head_revision() == "0005"
    assert schema_differences(old_url) == []
    after = table_rows(old_url)
    assert [row.pop("environment") for row in after["tabpy_versions"]] == [None] * len(
        before["tabpy_versions"]
    )
    assert after == before
    assert all(v.environment is None for v in registry.versions("add"))
    assert registry.get("add").environment is None
    registry.close()
