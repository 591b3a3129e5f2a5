"""The registry's own rules on a real SQLite file: deploys, versions, rollbacks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tabpy.registry.deploy_request import DeployRequest
from tabpy.registry.endpoint import Endpoint
from tabpy.registry.legacy import import_legacy_state
from tabpy.registry.registry_errors import (
    RETRY_AFTER_SECONDS,
    DeployRaced,
    RegistryUnavailable,
    UnknownArtifact,
    UnknownEndpoint,
)
from tabpy.registry.store import Registry, insert_endpoint, set_meta
from tabpy.registry.tables import versions_table


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    yield registry
    registry.close()


def artifact(registry: Registry, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    registry.put_artifact(sha256, data)
    return sha256


def create(registry: Registry, name: str, data: bytes, **fields: object) -> Endpoint:
    sha256 = artifact(registry, data)
    body = {"name": name, "artifact": sha256, **fields}
    return registry.deploy(DeployRequest.to_create(body, set(), Path("/nowhere")), sha256)


def update(registry: Registry, name: str, data: bytes | None, **fields: object) -> Endpoint:
    sha256 = None if data is None else artifact(registry, data)
    body = {**fields, **({"artifact": sha256, "should_update_version": True} if sha256 else {})}
    request = DeployRequest.to_update(name, body, {name}, Path("/nowhere"))
    return registry.deploy(request, sha256)


def test_a_deploy_checks_the_name_again_in_its_transaction(registry: Registry) -> None:
    # The request was validated against a view another instance has since changed.
    create(registry, "add", b"v1")
    stale = DeployRequest.to_create({"name": "add", "artifact": "a" * 64}, set(), Path("/"))
    with pytest.raises(DeployRaced) as raced:
        registry.deploy(stale, None)
    assert raced.value.message == "endpoint add was changed by another deploy at the same time."
    registry.delete("add")
    gone = DeployRequest.to_update("add", {"description": "x"}, {"add"}, Path("/"))
    with pytest.raises(UnknownEndpoint):
        registry.deploy(gone, None)


def test_a_new_version_needs_its_artifact_uploaded(registry: Registry) -> None:
    create(registry, "add", b"v1")
    revision = registry.revision()
    request = DeployRequest.to_update(
        "add", {"artifact": "b" * 64, "should_update_version": True}, {"add"}, Path("/")
    )
    with pytest.raises(UnknownArtifact):
        registry.deploy(request, "b" * 64)
    assert registry.get("add").version == 1 and registry.revision() == revision


def test_each_version_keeps_what_its_endpoint_said(registry: Registry) -> None:
    create(registry, "add", b"v1", description="one", docstring="Doc one.", schema={"v": 1})
    update(registry, "add", b"v2", description="two", schema={"v": 2})
    versions = registry.versions("add")
    assert [(v.description, v.docstring, v.schema, v.current) for v in versions] == [
        ("one", "Doc one.", {"v": 1}, False),
        ("two", "Doc one.", {"v": 2}, True),  # an update keeps fields it does not send
    ]


def test_rollback_keeps_the_current_value_of_what_a_version_did_not_record(
    registry: Registry,
) -> None:
    # A server older than these columns, sharing the registry during an upgrade, writes
    # versions without them.
    create(registry, "add", b"v1", description="one", docstring="Doc one.")
    update(registry, "add", b"v2", description="two", docstring="Doc two.")
    with registry.transaction() as conn:
        conn.execute(
            sa.update(versions_table)
            .where(versions_table.c.version == 1)
            .values(description=None, docstring="Doc one, recorded.", schema=None)
        )
    restored = registry.rollback("add", 1)
    assert (restored.version, restored.description, restored.docstring) == (
        3,
        "two",
        "Doc one, recorded.",
    )
    third = registry.versions("add")[2]
    assert (third.description, third.docstring, third.schema) == ("two", "Doc one, recorded.", None)
    assert registry.versions("add")[0].description is None  # unknown stays unknown


def test_imported_versions_share_their_endpoints_fields(registry: Registry) -> None:
    # The legacy import knows only the current fields, so every version is given them.
    endpoint = Endpoint("old", "model", 2, "Old one", "Old doc.", {"s": 1}, False, [], None, 0, 0)
    stored = artifact(registry, b"x")
    with registry.transaction() as conn:
        insert_endpoint(conn, endpoint, {1: None, 2: stored})
    assert [(v.version, v.description, v.schema, v.current) for v in registry.versions("old")] == [
        (1, "Old one", {"s": 1}, False),
        (2, "Old one", {"s": 1}, True),
    ]


def test_versions_restart_after_a_delete(registry: Registry) -> None:
    create(registry, "temp", b"v1")
    update(registry, "temp", b"v2")
    registry.delete("temp")
    with pytest.raises(UnknownEndpoint):
        registry.versions("temp")
    create(registry, "temp", b"v3")
    assert [(v.version, v.current) for v in registry.versions("temp")] == [(1, True)]


def test_an_override_create_of_a_taken_name_becomes_its_next_version(registry: Registry) -> None:
    # The instance that took the request had not seen the first deploy yet.
    create(registry, "add", b"v1")
    sha256 = hashlib.sha256(b"v2").hexdigest()
    registry.put_artifact(sha256, b"v2")
    body = {"name": "add", "artifact": sha256, "override": True, "description": "second"}
    request = DeployRequest.to_create(body, set(), Path("/nowhere"))
    endpoint = registry.deploy(request, sha256)
    assert (endpoint.version, endpoint.description) == (2, "second")
    assert [v.version for v in registry.versions("add")] == [1, 2]


def test_a_registry_that_cannot_be_reached_refuses_changes_without_naming_it(
    tmp_path: Path,
) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'gone' / 'registry.db'}", create=False)
    with pytest.raises(RegistryUnavailable) as refused:
        registry.delete("add")
    assert refused.value.retry_after == RETRY_AFTER_SECONDS
    assert str(tmp_path) not in refused.value.message + str(refused.value.info)


def test_a_server_database_gets_a_pool_of_two_connections_and_the_file_password() -> None:
    from tabpy.registry.database import create_engine

    engine = create_engine("postgresql+psycopg://tabpy:in-url@db/tabpy", "from file")
    try:
        assert engine.url.password == "from file"
        assert engine.pool.size() + engine.pool._max_overflow == 2  # type: ignore[attr-defined]
        assert "from file" not in repr(engine.url)
    finally:
        engine.dispose()


def test_the_first_recorded_lock_of_a_spec_stands_and_changes_nothing_clients_see(
    registry: Registry,
) -> None:
    from tabpy.environments.spec import parse_spec

    spec = parse_spec(["six"])
    create(registry, "plain", b"p")
    first = create(registry, "a", b"a1", requirements=["six"])
    create(registry, "b", b"b1", requirements=["six==1.16.0"])  # another spec
    revision, before = registry.revision(), registry.snapshot()[1]
    assert registry.recorded_lock(spec, "3.12.1") is None

    assert registry.record_lock(spec, "3.12.1", "six==1.16.0\n", "k1") == "six==1.16.0\n"
    # A later resolution (elsewhere, after a release) loses to the recorded one.
    assert registry.record_lock(spec, "3.12.1", "six==1.17.0\n", "k2") == "six==1.16.0\n"
    assert registry.recorded_lock(spec, "3.12.1") == "six==1.16.0\n"
    assert registry.recorded_lock(spec, "3.11.9") is None  # each Python resolves on its own
    assert registry.recorded_lock(parse_spec(["six==1.16.0"]), "3.12.1") is None

    # Nothing an instance polls or a client reads moved.
    assert registry.revision() == revision
    assert registry.snapshot()[1] == before
    assert registry.get("a").info() == first.info()
    assert registry.get("a").environment == spec
    # A new version of the same spec, and a rollback, find the recorded lock.
    update(registry, "a", b"a2", requirements=["six"])
    registry.rollback("a", 1)
    assert registry.recorded_lock(spec, "3.12.1") == "six==1.16.0\n"
    assert [v.environment for v in registry.versions("a")] == [spec, spec, spec]


def test_writing_a_meta_key_again_replaces_its_value(registry: Registry) -> None:
    with registry.transaction() as conn:
        set_meta(conn, "k", "first")
    with registry.transaction() as conn:
        set_meta(conn, "k", "second")
    assert registry.get_meta("k") == "second"


def test_a_legacy_import_that_lost_the_race_to_another_instance_is_no_error(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "state.ini").write_text(
        "[Query Objects Service Versions]\n"
        'add = {"version": 1, "description": "adds", "type": "model"}\n'
    )
    # Another instance on the same registry imported first...
    other = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        assert import_legacy_state(other, tmp_path) == ["add"]
    finally:
        other.close()
    # ...after this one had read that nothing was imported yet.
    real = registry.get_meta
    reads = [None]  # the one stale read, then the truth

    def get_meta(key: str) -> str | None:
        return reads.pop() if reads else real(key)

    monkeypatch.setattr(registry, "get_meta", get_meta)
    assert import_legacy_state(registry, tmp_path) == []
    assert registry.names() == {"add"}
    assert [v.version for v in registry.versions("add")] == [1]
