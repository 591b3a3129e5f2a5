"""The schema as servers created it before revisions were recorded.

Revision ID: 0001
Revises:
Create Date: 2026-11-30

A registry made by those servers has these four tables and no version table; it is
stamped with this revision rather than migrated (see ``tabpy.registry.migrate``), so this
must stay exactly what they created: names up to 255 characters, types up to 64.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "tabpy_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "tabpy_endpoints",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("docstring", sa.Text, nullable=False),
        sa.Column("schema", sa.Text, nullable=False),
        sa.Column("is_public", sa.Text, nullable=False),
        sa.Column("dependencies", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_modified_time", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tabpy_versions",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("artifact", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tabpy_artifacts",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(meta, [{"key": "revision", "value": "0"}])


def downgrade() -> None:
    for table in ("tabpy_artifacts", "tabpy_versions", "tabpy_endpoints", "tabpy_meta"):
        op.drop_table(table)
