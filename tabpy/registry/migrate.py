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

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tabpy.registry.database import schema_transaction
from tabpy.registry.registry_errors import RegistryTooNew, UnrecognisedRegistry
from tabpy.registry.tables import meta_table

__all__ = ["BASELINE", "VERSION_TABLE", "current_revision", "head_revision", "upgrade_schema"]

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


with _quiet_alembic():  # importing alembic logs the plugins it sets up
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

VERSION_TABLE = "tabpy_alembic_version"
#: The schema of servers that predate recorded revisions (``create_all``).
BASELINE = "0001"
_BASELINE_TABLES = ("tabpy_meta", "tabpy_endpoints", "tabpy_versions", "tabpy_artifacts")


def upgrade_schema(engine: Engine) -> str:
    """Upgrade the registry to the newest revision, or refuse it; returns that revision."""
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


def current_revision(engine: Engine) -> str | None:
    """The revision the registry is at (None: no version table)."""
    with _quiet_alembic(), engine.connect() as conn:
        return _context(conn).get_current_revision()


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the registry migrations have no head revision"
    return head


@cache
def _known_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(_config())
    return frozenset(revision.revision for revision in script.walk_revisions())


def _config() -> Config:
    """Alembic's configuration, built in code: the migrations are package data, not an ini."""
    config = Config()
    config.set_main_option("script_location", str(files("tabpy.registry") / "migrations"))
    return config


def _context(conn: Connection) -> MigrationContext:
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
