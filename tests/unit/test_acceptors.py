"""``TABPY_ACCEPTORS``: the setting, and how the supervisor splits the workers and names the
acceptors. The processes themselves are tested in ``tests/integration/test_acceptors.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tabpy.config import ConfigError, Settings, load_settings
from tabpy.server.acceptors import acceptor_settings, worker_share


def settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(None, {"TABPY_STATE_PATH": str(tmp_path), **env})


def test_one_acceptor_by_default(tmp_path: Path) -> None:
    assert settings(tmp_path).acceptors == 1


def test_acceptors_must_be_a_whole_number_of_at_least_one(tmp_path: Path) -> None:
    for value in ("0", "-2", "two"):
        with pytest.raises(ConfigError, match="TABPY_ACCEPTORS"):
            settings(tmp_path, TABPY_ACCEPTORS=value)


def test_several_acceptors_are_refused_with_arrow_flight(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TABPY_ACCEPTORS = 2 cannot be combined") as info:
        settings(tmp_path, TABPY_ACCEPTORS="2", TABPY_ARROW_ENABLE="true")
    assert "set TABPY_ACCEPTORS = 1" in str(info.value)


@pytest.mark.parametrize(
    ("workers", "acceptors", "shares"),
    [(4, 2, [2, 2]), (5, 2, [3, 2]), (2, 3, [1, 1, 1]), (7, 3, [3, 2, 2]), (1, 1, [1])],
)
def test_workers_are_split_as_evenly_as_possible_with_at_least_one_each(
    workers: int, acceptors: int, shares: list[int]
) -> None:
    assert [worker_share(workers, acceptors, i) for i in range(acceptors)] == shares


def test_each_acceptor_has_its_share_and_its_own_instance_id(tmp_path: Path) -> None:
    base = settings(tmp_path, TABPY_ACCEPTORS="2", TABPY_WORKERS="3", TABPY_INSTANCE_ID="tabpy-a")
    first, second = (acceptor_settings(base, i) for i in range(2))
    assert (first.workers, first.instance_id) == (2, "tabpy-a/0")
    assert (second.workers, second.instance_id) == (1, "tabpy-a/1")
    assert first.port == second.port == base.port
