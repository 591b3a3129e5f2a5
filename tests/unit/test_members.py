"""The fleet's member list (tabpy.registry.members), on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tabpy.registry import members
from tabpy.registry.members import Loaded, Member
from tabpy.registry.store import Registry
from tabpy.registry.tables import members_table

EXPIRY = 15_000  # ms: three 5 s heartbeats


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "sqlite":
        opened = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
        yield opened
        opened.close()
        return
    from tests.integration.postgres_support import postgres_cluster

    with postgres_cluster() as url:
        opened = Registry(url)
        yield opened
        opened.close()


def member(instance_id: str, at: int, loaded: Loaded | None = None) -> Member:
    return Member(
        instance_id,
        f"http://{instance_id}:47112",
        f"grpc+tcp://{instance_id}:47113" if instance_id != "no-flight" else None,
        "3.0.0",
        started_at=at - 1000,
        heartbeat_at=at,
        loaded=loaded or Loaded(),
    )


def test_a_heartbeat_registers_then_updates_one_row(registry: Registry) -> None:
    members.heartbeat(registry.engine, member("a", 100_000))
    loaded = Loaded(7, {"add": (2, "LoadSuccessful")})
    members.heartbeat(registry.engine, member("a", 105_000, loaded))
    with registry.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(members_table)).scalar() == 1
    [found] = members.live_members(registry.engine, EXPIRY, at_ms=106_000)
    assert found == member("a", 105_000, loaded)
    assert found.loaded.endpoints == {"add": (2, "LoadSuccessful")}


def test_members_that_stop_beating_are_ignored_then_removed(registry: Registry) -> None:
    members.heartbeat(registry.engine, member("old", 100_000))
    members.heartbeat(registry.engine, member("new", 110_000))
    members.heartbeat(registry.engine, member("no-flight", 112_000))
    live = members.live_members(registry.engine, EXPIRY, at_ms=116_000)
    assert [m.instance_id for m in live] == ["new", "no-flight"]
    assert live[1].flight_url is None
    # Ignored is not yet removed: an expired member that beats again is back at once.
    assert members.expire(registry.engine, EXPIRY, at_ms=116_000) == 1
    assert members.expire(registry.engine, EXPIRY, at_ms=116_000) == 0
    members.heartbeat(registry.engine, member("old", 117_000))
    live = members.live_members(registry.engine, EXPIRY, at_ms=117_000)
    assert [m.instance_id for m in live] == ["new", "no-flight", "old"]


def test_a_clean_shutdown_leaves_at_once(registry: Registry) -> None:
    members.heartbeat(registry.engine, member("a", 100_000))
    members.heartbeat(registry.engine, member("b", 100_000))
    members.deregister(registry.engine, "a")
    live = members.live_members(registry.engine, EXPIRY, at_ms=100_000)
    assert [m.instance_id for m in live] == ["b"]


def test_the_member_list_does_not_move_the_endpoint_revision(registry: Registry) -> None:
    before = registry.revision()
    members.heartbeat(registry.engine, member("a", 100_000))
    members.deregister(registry.engine, "a")
    assert registry.revision() == before


@pytest.mark.parametrize(
    ("loaded", "expected"),
    [
        (Loaded(4, {"f": (3, "LoadSuccessful")}), True),
        (Loaded(4, {"f": (3, "LoadFailed")}), True),  # finished: the failure is its answer
        (Loaded(4, {"f": (3, "LoadInProgress")}), False),
        (Loaded(3, {"f": (2, "LoadSuccessful")}), False),  # has not read the change yet
        (Loaded(5, {}), True),  # removed since
    ],
)
def test_what_counts_as_loaded(loaded: Loaded, expected: bool) -> None:
    assert loaded.has_loaded("f", 4) is expected


def test_a_row_written_by_something_else_counts_as_nothing_loaded() -> None:
    assert Loaded.decode(3, "not json").endpoints == {}
    assert Loaded.decode(3, '{"f": [1, "LoadSuccessful"]}').endpoints == {
        "f": (1, "LoadSuccessful")
    }
