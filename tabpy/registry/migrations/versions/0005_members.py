"""The fleet's members: which instances are alive, where they listen and what they loaded.

Revision ID: 0005_members
Revises: 0003
Create Date: 2026-11-30

One new table; nothing existing changes, so an instance still at the previous revision keeps
working on the registry (it simply does not appear among the members, and deploys made
elsewhere do not wait for it). Each row belongs to one running instance, which rewrites it on
every heartbeat; rows whose heartbeat is too old are ignored and later deleted by any member.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tabpy_members",
        sa.Column("instance_id", sa.String(128), primary_key=True),
        sa.Column("http_url", sa.String(512), nullable=False),
        sa.Column("flight_url", sa.String(512), nullable=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
        sa.Column("catalog_revision", sa.BigInteger, nullable=False),
        sa.Column("loaded", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tabpy_members")
