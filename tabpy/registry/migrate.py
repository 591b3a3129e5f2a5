"""Bringing a registry's schema up to date when a server starts.

The whole check-and-upgrade runs in one :func:`~tabpy.registry.database.schema_transaction`,
so instances starting together on one registry take turns: the first upgrades, the others
find nothing left to do. A registry made before revisions were recorded (four tables, no
version table) is stamped with the baseline revision, then upgraded like any other. A
registry at a revision this code does not know was upgraded by a newer server; using it
could lose what that server stored, so start-up stops with one line saying so.

The version table has its own name so that a PostgreSQL database shared with another
Alembic-managed application keeps the two histories apart.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tabpy.registry.database import schema_transaction
from tabpy.registry.registry_errors import RegistryTooNew, UnrecognisedRegistry
from tabpy.registry.tables import meta_table

__all__ = [
    "BASELINE",
    "VERSION_TABLE",
    "current_revision",
    "head_revision",
    "schema_is_current",
    "upgrade_schema",
]

logger = logging.getLogger(__name__)


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic narrates its own set-up at INFO (plugins loaded, "Context impl SQLiteImpl.",
    "Will assume non-transactional DDL.", the last untrue inside our transaction); the log
    gets one line per applied revision from ``env.py`` instead. A level an admin set for
    the ``alembic`` logger is left alone."""
    alembic_logger = logging.getLogger("alembic")
    if alembic_logger.level != logging.NOTSET:
        yield
        return
    alembic_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        alembic_logger.setLevel(logging.NOTSET)


if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

VERSION_TABLE = "tabpy_alembic_version"
#: The schema of servers that predate recorded revisions (``create_all``).
BASELINE = "0001"
_BASELINE_TABLES = ("tabpy_meta", "tabpy_endpoints", "tabpy_versions", "tabpy_artifacts")


def upgrade_schema(engine: Engine) -> str:
    """Upgrade the registry to the newest revision, or refuse it; returns that revision.

    A registry already at the newest revision (every start but the first after an upgrade) is
    recognised without Alembic, which then is never imported: it would add about 10 MB to the
    server process for nothing.
    """
    newest = schema_is_current(engine)
    if newest is not None:
        return newest
    with _quiet_alembic():  # importing alembic logs the plugins it sets up
        from alembic import command
        from alembic.script import ScriptDirectory
    config = _config()
    script = ScriptDirectory.from_config(config)
    head = head_revision()
    with _quiet_alembic(), schema_transaction(engine) as conn:
        context = _context(conn)
        found = context.get_current_revision()
        if found is None and _predates_revisions(conn):
            logger.info("The registry predates schema revisions: recording it as %s", BASELINE)
            context.stamp(script, BASELINE)
            found = BASELINE
        if found is not None and found not in _known_revisions():
            raise RegistryTooNew(found, head)
        if found != head:
            logger.info("Upgrading the registry schema from %s to %s", found or "empty", head)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        _ensure_revision_counter(conn)
    return head


def schema_is_current(engine: Engine) -> str | None:
    """The newest revision if the registry is already at it (found without Alembic); else None."""
    newest = _head_from_files()
    if newest is None:
        return None
    with schema_transaction(engine) as conn:
        if _recorded_revisions(conn) != [newest]:
            return None
        _ensure_revision_counter(conn)
    return newest


def current_revision(engine: Engine) -> str | None:
    """The revision the registry is at (None: no version table)."""
    with _quiet_alembic(), engine.connect() as conn:
        return _context(conn).get_current_revision()


@cache
def head_revision() -> str:
    with _quiet_alembic():  # importing alembic logs the plugins it sets up
        from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the registry migrations have no head revision"
    return head


@cache
def _known_revisions() -> frozenset[str]:
    with _quiet_alembic():  # importing alembic logs the plugins it sets up
        from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    return frozenset(revision.revision for revision in script.walk_revisions())


@cache
def _head_from_files() -> str | None:
    """The newest revision, read from the revision files without Alembic; None unless the
    history is one straight line (Alembic then decides)."""
    revisions: dict[str, str | None] = {}
    for path in (files("tabpy.registry") / "migrations" / "versions").iterdir():
        if not path.name.endswith(".py") or path.name.startswith("_"):
            continue
        names: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names[target.id] = node.value.value
        revision, down = names.get("revision"), names.get("down_revision")
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            return None
        revisions[revision] = down
    heads = set(revisions) - set(revisions.values())
    return heads.pop() if len(heads) == 1 else None


def _recorded_revisions(conn: Connection) -> list[str]:
    """The revisions in the registry's version table (none: no table, or empty)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return []
    rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
    return [row[0] for row in rows]


def _config() -> Config:
    """Alembic's configuration, built in code: the migrations are package data, not an ini."""
    with _quiet_alembic():  # importing alembic logs the plugins it sets up
        from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("tabpy.registry") / "migrations"))
    return config


def _context(conn: Connection) -> MigrationContext:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})


def _predates_revisions(conn: Connection) -> bool:
    """True for a registry made by ``create_all``; False for an empty database."""
    present = [t for t in _BASELINE_TABLES if sa.inspect(conn).has_table(t)]
    if not present:
        return False
    if len(present) < len(_BASELINE_TABLES):
        raise UnrecognisedRegistry(present, [t for t in _BASELINE_TABLES if t not in present])
    return True


def _ensure_revision_counter(conn: Connection) -> None:
    # Older servers created the tables and this row in two transactions; a crash between
    # them left a registry whose revision never moved, so other instances never refreshed.
    exists = conn.execute(sa.select(meta_table.c.key).where(meta_table.c.key == "revision"))
    if exists.first() is None:
        conn.execute(sa.insert(meta_table).values(key="revision", value="0"))
