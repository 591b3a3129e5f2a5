"""The registry's tables as the newest migration leaves them (SQLAlchemy Core).

The code reads and writes through these definitions; the database gets them from the
migrations in :mod:`tabpy.registry.migrations`, never from ``create_all``. A test checks
that the two agree, so a column added here without a migration (or the reverse) fails.
"""

from __future__ import annotations

import sqlalchemy as sa

from tabpy.registry.endpoint import MAX_NAME_LENGTH, MAX_TYPE_LENGTH

__all__ = ["artifacts_table", "endpoints_table", "meta_table", "metadata", "versions_table"]

metadata = sa.MetaData()

meta_table = sa.Table(
    "tabpy_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

endpoints_table = sa.Table(
    "tabpy_endpoints",
    metadata,
    sa.Column("name", sa.String(MAX_NAME_LENGTH), primary_key=True),
    sa.Column("type", sa.String(MAX_TYPE_LENGTH), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("docstring", sa.Text, nullable=False),
    sa.Column("schema", sa.Text, nullable=False),  # JSON text
    sa.Column("is_public", sa.Text, nullable=False),  # JSON text: stored as given
    sa.Column("dependencies", sa.Text, nullable=False),  # JSON text
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("creation_time", sa.BigInteger, nullable=False),
    sa.Column("last_modified_time", sa.BigInteger, nullable=False),
)

versions_table = sa.Table(
    "tabpy_versions",
    metadata,
    sa.Column("name", sa.String(MAX_NAME_LENGTH), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("artifact", sa.String(64), nullable=True),  # null: legacy pickle was missing
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # What the endpoint said about itself while this version was current, restored by a
    # rollback. Null means unknown: written by a server older than these columns (one may
    # still share the registry during an upgrade), so a rollback keeps the current value.
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("docstring", sa.Text, nullable=True),
    sa.Column("schema", sa.Text, nullable=True),  # JSON text
)

artifacts_table = sa.Table(
    "tabpy_artifacts",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
