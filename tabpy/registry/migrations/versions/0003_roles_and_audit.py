"""Roles, endpoint owners and callers, and the audit trail.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-14

Three new tables and a new counter; nothing existing changes, so a server still at 0002 keeps
working on the registry while instances are upgraded (it neither records owners nor audits, and
the endpoints it creates have no owner: only admins may change them once ``TABPY_AUTHZ`` is on).

Endpoints deployed before this revision have no owner for the same reason; an admin gives them
one with ``PUT /endpoints/<name>`` and ``{"owners": [...]}``. The ``access_revision`` row of
``tabpy_meta`` (written by the first change, absent means 0) moves whenever grants, owners or
callers change, so servers re-read them without re-reading the endpoints.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_NAME = 1024  # tabpy.registry.endpoint.MAX_NAME_LENGTH at this revision
_PRINCIPAL = 255


def upgrade() -> None:
    op.create_table(
        "tabpy_grants",
        sa.Column("principal", sa.String(_PRINCIPAL), primary_key=True),
        sa.Column("role", sa.String(32), primary_key=True),
        sa.Column("granted_at", sa.BigInteger, nullable=False),
        sa.Column("granted_by", sa.String(_PRINCIPAL), nullable=False),
    )
    op.create_table(
        "tabpy_endpoint_access",
        sa.Column("name", sa.String(_NAME), primary_key=True),
        sa.Column("relation", sa.String(16), primary_key=True),
        sa.Column("principal", sa.String(_PRINCIPAL), primary_key=True),
    )
    op.create_table(
        "tabpy_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("principal", sa.String(_PRINCIPAL), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("endpoint", sa.String(_NAME), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("client", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_tabpy_audit_at", "tabpy_audit", ["at"])
    op.create_index("ix_tabpy_audit_principal", "tabpy_audit", ["principal"])
    op.create_index("ix_tabpy_audit_endpoint", "tabpy_audit", ["endpoint"])


def downgrade() -> None:
    for table in ("tabpy_audit", "tabpy_endpoint_access", "tabpy_grants"):
        op.drop_table(table)
