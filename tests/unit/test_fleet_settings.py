"""The shared name, description and CORS values: imported once, pushed when edited."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tabpy.registry.fleet_settings import fleet_service_info, sync_service_info
from tabpy.registry.service_info import ServiceInfo
from tabpy.registry.store import Registry

TEMPLATE = ServiceInfo("TabPy Server", "", "0", "", "", "", "")


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(f"sqlite:///{tmp_path / 'registry.db'}")


def state(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_the_first_instance_imports_its_values(registry: Registry, tmp_path: Path) -> None:
    mine = dataclasses.replace(TEMPLATE, name="Sales", cors_allow_origin="https://a.example")
    assert sync_service_info(registry, mine, state(tmp_path, "a")) == mine
    assert fleet_service_info(registry, TEMPLATE) == mine


def test_a_joining_instance_serves_the_fleets_values(registry: Registry, tmp_path: Path) -> None:
    first = dataclasses.replace(TEMPLATE, name="Sales", description="one fleet")
    sync_service_info(registry, first, state(tmp_path, "a"))
    joining = dataclasses.replace(TEMPLATE, subdirectory="tabpy")
    served = sync_service_info(registry, joining, state(tmp_path, "b"))
    # The shared fields are the fleet's; the URL prefix stays the instance's own.
    assert served == dataclasses.replace(first, subdirectory="tabpy")
    # Restarting it with the same file changes nothing either.
    assert sync_service_info(registry, joining, tmp_path / "b") == served


def test_an_edited_state_file_is_pushed_to_the_fleet(registry: Registry, tmp_path: Path) -> None:
    a, b = state(tmp_path, "a"), state(tmp_path, "b")
    sync_service_info(registry, TEMPLATE, a)
    sync_service_info(registry, TEMPLATE, b)
    edited = dataclasses.replace(TEMPLATE, name="Renamed", cors_allow_methods="GET, POST")
    assert sync_service_info(registry, edited, a) == edited  # a single server: as TabPy
    assert fleet_service_info(registry, TEMPLATE) == edited
    # B's file is unchanged since it synchronised: it does not undo A's edit at its restart.
    assert sync_service_info(registry, TEMPLATE, b) == edited


def test_without_a_shared_copy_the_local_values_are_served(registry: Registry) -> None:
    local = dataclasses.replace(TEMPLATE, name="Local")
    assert fleet_service_info(registry, local) == local
