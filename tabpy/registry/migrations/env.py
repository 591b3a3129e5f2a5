"""Alembic's entry point: run the migrations on the connection the caller hands over.

:func:`tabpy.registry.migrate.upgrade_schema` opens that connection, takes the schema lock
and puts the connection in ``config.attributes["connection"]``; the transaction is the
caller's, so everything here commits or rolls back with it. For a developer's
``alembic`` command without one, ``-x url=<SQLAlchemy URL>`` names the database.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo

from tabpy.registry.migrate import VERSION_TABLE, logger
from tabpy.registry.tables import metadata


def _applied(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    # A Script (typed as its base, Revision): its doc is the module docstring's first line.
    summary = getattr(step.up_revision, "doc", "") or ""
    logger.info("Registry schema: applied revision %s (%s)", step.up_revision_id, summary)


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot alter a column in place; batch operations copy the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        on_version_apply=_applied,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("The registry's migrations run online only (no --sql).")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("Name the database: alembic -x url=<SQLAlchemy URL> ...")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        _run(connection)


main()
