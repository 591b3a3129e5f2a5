"""Start-up waits for a registry database that is not reachable yet, then gives up."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from tabpy.registry import connect
from tabpy.registry.connect import FIRST_PAUSE, LONGEST_PAUSE, connect_registry


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_retries_with_growing_pauses_until_the_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    url = f"sqlite:///{tmp_path / 'missing' / 'registry.db'}"  # its folder does not exist
    with pytest.raises(sa.exc.OperationalError):
        connect_registry(url, password=None, timeout=20, clock=clock, sleep=clock.sleep)
    assert clock.pauses[:4] == [FIRST_PAUSE, 2 * FIRST_PAUSE, 4 * FIRST_PAUSE, 8 * FIRST_PAUSE]
    assert max(clock.pauses) == LONGEST_PAUSE
    assert sum(clock.pauses) == pytest.approx(20)
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == len(clock.pauses)
    assert "not reachable (attempt 1: " in retries[0].getMessage()


def test_comes_up_once_the_database_answers(tmp_path: Path) -> None:
    clock = FakeClock()
    folder = tmp_path / "later"

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        folder.mkdir(exist_ok=True)  # the database "starts" during the first pause

    registry = connect_registry(
        f"sqlite:///{folder / 'registry.db'}", password=None, timeout=60, clock=clock, sleep=sleep
    )
    try:
        assert registry.revision() == 0
        assert clock.pauses == [FIRST_PAUSE]
    finally:
        registry.close()


def test_errors_that_waiting_cannot_fix_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    with pytest.raises(sa.exc.NoSuchModuleError):
        connect_registry("nosuchdb://x/y", password=None, timeout=60, sleep=clock.sleep)
    assert clock.pauses == []
    assert connect.LONGEST_PAUSE == LONGEST_PAUSE


def test_the_password_file_loses_only_its_trailing_newline(tmp_path: Path) -> None:
    import types

    from tabpy.cli.wiring import registry_password

    secret = tmp_path / "password"
    secret.write_text(" s3cr:et \n", encoding="utf-8")
    settings = types.SimpleNamespace(registry_password_file=secret)
    assert registry_password(settings) == " s3cr:et "  # type: ignore[arg-type]
    settings.registry_password_file = None
    assert registry_password(settings) is None  # type: ignore[arg-type]
