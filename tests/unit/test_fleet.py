"""This instance as a fleet member (tabpy.runtime.fleet): heartbeat, reports, deploy waits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tabpy.registry import members
from tabpy.registry.members import Loaded, Member
from tabpy.registry.store import Registry
from tabpy.runtime import fleet as fleet_module
from tabpy.runtime.catalog import LoadState, LoadStatus
from tabpy.runtime.fleet import Fleet, MemberAddress


@dataclass
class FakeCatalog:
    revision: int = 1
    states: dict[str, LoadState] = field(default_factory=dict)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    opened = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    yield opened
    opened.close()


def make_fleet(registry: Registry, catalog: FakeCatalog, flight: str | None = None) -> Fleet:
    address = MemberAddress("me", "http://me:47112", lambda: flight, "3.0.0")
    return Fleet(registry.engine, catalog, address, 0.2)  # type: ignore[arg-type]


def other(registry: Registry, loaded: Loaded, instance_id: str = "other") -> None:
    now = members.now_ms()
    members.heartbeat(
        registry.engine,
        Member(instance_id, "http://o:1", "grpc+tcp://o:2", "3.0.0", now, now, loaded),
    )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_start_registers_and_close_leaves(registry: Registry) -> None:
    catalog = FakeCatalog(3, {"f": LoadState(2, "model", LoadStatus.SUCCESSFUL)})

    async def scenario() -> list[Member]:
        fleet = make_fleet(registry, catalog, "grpc+tcp://me:47113")
        await fleet.start()
        found = fleet.read_members()
        await fleet.close()
        return found

    [me] = run(scenario())
    assert (me.instance_id, me.flight_url, me.loaded) == (
        "me",
        "grpc+tcp://me:47113",
        Loaded(3, {"f": (2, "LoadSuccessful")}),
    )
    assert members.live_members(registry.engine, 10_000) == []


def test_a_change_is_reported_before_the_next_heartbeat(registry: Registry) -> None:
    catalog = FakeCatalog(1)

    async def scenario() -> Loaded:
        fleet = make_fleet(registry, catalog)
        fleet.heartbeat_seconds = 60.0  # only a change can cause the second write
        await fleet.start()
        catalog.revision = 2
        catalog.states = {"f": LoadState(1, "model", LoadStatus.IN_PROGRESS)}
        for _ in range(50):
            await asyncio.sleep(fleet_module.CHANGE_CHECK_SECONDS)
            [me] = fleet.read_members()
            if me.loaded.revision == 2:
                break
        await fleet.close()
        return me.loaded

    assert run(scenario()) == Loaded(2, {"f": (1, "LoadInProgress")})


def test_a_lone_member_waits_for_nobody(registry: Registry) -> None:
    async def scenario() -> list[str] | None:
        fleet = make_fleet(registry, FakeCatalog())
        await fleet.start()
        try:
            return await fleet.wait_loaded("f", 1, 5.0)
        finally:
            await fleet.close()

    assert run(scenario()) is None


def test_the_wait_names_members_behind_and_ends_when_they_catch_up(registry: Registry) -> None:
    other(registry, Loaded(4, {"f": (2, "LoadInProgress")}))
    other(registry, Loaded(5, {"f": (3, "LoadSuccessful")}), "done")

    async def scenario() -> tuple[list[str] | None, list[str] | None]:
        fleet = make_fleet(registry, FakeCatalog(5))
        await fleet.start()
        try:
            behind = await fleet.wait_loaded("f", 5, 0.3)
            waiting = asyncio.ensure_future(fleet.wait_loaded("f", 5, 10.0))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(other, registry, Loaded(5, {"f": (3, "LoadFailed")}))
            return behind, await waiting
        finally:
            await fleet.close()

    assert run(scenario()) == (["other"], [])
