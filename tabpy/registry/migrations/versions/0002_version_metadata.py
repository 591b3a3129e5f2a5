"""Each version keeps its description, docstring and schema; names up to 1024 characters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

A rollback restores what a version said about itself along with its code, so versions
get the three columns. Existing versions get their endpoint's current values, the best
record there is. The columns stay nullable: a server still at 0001 that shares the
registry during an upgrade writes versions without them, and null means "unknown".

Endpoint names may be up to ``MAX_NAME_LENGTH`` (1024) characters; the deploy route
checks that, and the columns are widened to match so that PostgreSQL stores any name
the code accepts. SQLite never enforced the old 255, so a longer name written there by
older code stays as it is, and can still be deleted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_FIELDS = ("description", "docstring", "schema")


def upgrade() -> None:
    for field in _FIELDS:
        op.add_column("tabpy_versions", sa.Column(field, sa.Text, nullable=True))
    endpoints = sa.table(
        "tabpy_endpoints", *(sa.column(c) for c in ("name", "description", "docstring", "schema"))
    )
    versions = sa.table("tabpy_versions", *(sa.column(c) for c in ("name", *_FIELDS)))
    op.execute(
        versions.update().values(
            {
                getattr(versions.c, field): sa.select(getattr(endpoints.c, field))
                .where(endpoints.c.name == versions.c.name)
                .scalar_subquery()
                for field in _FIELDS
            }
        )
    )
    for table in ("tabpy_endpoints", "tabpy_versions"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "name", existing_type=sa.String(255), type_=sa.String(1024), existing_nullable=False
            )


def downgrade() -> None:
    for table in ("tabpy_endpoints", "tabpy_versions"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "name", existing_type=sa.String(1024), type_=sa.String(255), existing_nullable=False
            )
    with op.batch_alter_table("tabpy_versions") as batch:
        for field in _FIELDS:
            batch.drop_column(field)
