"""Each version may name the Python environment it runs in.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

A nullable ``environment`` column on the versions (JSON text: the requirement strings or lock
file the deploy sent). Null is the server's default environment, which every existing version
keeps, so the upgrade changes nothing they do; a rollback restores a version's environment with
its code. A server still at 0003 that shares the registry ignores the column and writes null.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tabpy_versions", sa.Column("environment", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tabpy_versions") as batch:
        batch.drop_column("environment")
