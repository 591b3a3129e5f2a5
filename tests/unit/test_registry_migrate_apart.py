"""The server upgrades its registry in a child process, so that Alembic never loads in it."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tabpy.config import ConfigError
from tabpy.registry.migrate import VERSION_TABLE, head_revision
from tabpy.registry.migrate_apart import in_memory, upgrade_apart
from tabpy.registry.store import Registry


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_a_new_registry_is_upgraded_without_alembic_in_the_server(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "registry.db")
    probe = (
        "import sys\n"
        "from tabpy.registry.store import Registry\n"
        f"registry = Registry({url!r}, migrate_apart=True)\n"
        "print(registry.revision(), 'alembic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["0", "False"]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        recorded = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    engine.dispose()
    assert [row[0] for row in recorded] == [head_revision()]


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_childs_log_lines_are_logged_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate_logger = logging.getLogger("tabpy.registry.migrate")
    # Other tests configure logging; this one needs the logger on and its records.
    monkeypatch.setattr(migrate_logger, "disabled", False)
    monkeypatch.setattr(migrate_logger, "level", logging.INFO)
    kept = Kept()
    migrate_logger.addHandler(kept)
    try:
        revision = upgrade_apart(sqlite_url(tmp_path / "registry.db"), None)
    finally:
        migrate_logger.removeHandler(kept)
    assert revision == head_revision()
    assert any("Upgrading the registry schema" in line for line in kept.lines)


def test_a_refusal_in_the_child_is_raised_here_with_its_words(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "registry.db")
    Registry(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(ConfigError, match=r"^TABPY_REGISTRY_URL: .*revision 0099"):
        Registry(url, migrate_apart=True)


def test_a_database_error_in_the_child_keeps_its_type(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "registry.db"
    with pytest.raises(sa.exc.OperationalError):  # what connect_registry retries on
        upgrade_apart(sqlite_url(missing), None)


def test_in_memory_databases_are_upgraded_in_process() -> None:
    assert in_memory("sqlite://")
    assert in_memory("sqlite:///:memory:")
    assert in_memory("sqlite:///file:reg?mode=memory&cache=shared&uri=true")
    assert not in_memory("sqlite:////var/lib/tabpy/registry.db")
    assert not in_memory("postgresql://db/tabpy")
    registry = Registry("sqlite://", migrate_apart=True)
    assert registry.revision() == 0
    registry.close()
