"""Starting on a registry that is already up to date needs no Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tabpy.registry.migrate import _head_from_files, head_revision, upgrade_schema


def test_the_revision_files_name_the_same_head_as_alembic() -> None:
    assert _head_from_files() == head_revision()


def test_an_up_to_date_registry_is_recognised_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    assert upgrade_schema(sa.create_engine(url)) == head_revision()  # a new registry: Alembic
    probe = (
        "import sys, sqlalchemy as sa\n"
        "from tabpy.registry.migrate import upgrade_schema\n"
        f"print(upgrade_schema(sa.create_engine({url!r})), 'alembic' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == [head_revision(), "False"]
