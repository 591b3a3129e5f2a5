"""The registry's tables as the newest migration leaves them (SQLAlchemy Core).

The code reads and writes through these definitions; the database gets them from the
migrations in :mod:`tabpy.registry.migrations`, never from ``create_all``. A test checks
that the two agree, so a column added here without a migration (or the reverse) fails.
"""

from __future__ import annotations

import sqlalchemy as sa

from tabpy.registry.endpoint import MAX_NAME_LENGTH, MAX_TYPE_LENGTH

__all__ = [
    "access_table",
    "artifacts_table",
    "audit_table",
    "endpoints_table",
    "grants_table",
    "members_table",
    "meta_table",
    "metadata",
    "versions_table",
]

#: Longest principal reference (``user:<name>``, ``group:<name>``, ``role:<name>``).
MAX_PRINCIPAL_LENGTH = 255

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
    # The environment spec (JSON text) the version runs in; null: the default environment.
    sa.Column("environment", sa.Text, nullable=True),
)

artifacts_table = sa.Table(
    "tabpy_artifacts",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# --- who may do what (TABPY_AUTHZ), and what was done --------------------------------------------

grants_table = sa.Table(
    "tabpy_grants",
    metadata,
    sa.Column("principal", sa.String(MAX_PRINCIPAL_LENGTH), primary_key=True),
    sa.Column("role", sa.String(32), primary_key=True),
    sa.Column("granted_at", sa.BigInteger, nullable=False),
    sa.Column("granted_by", sa.String(MAX_PRINCIPAL_LENGTH), nullable=False),
)

# An endpoint's owners and callers; no caller rows means every caller may query it.
access_table = sa.Table(
    "tabpy_endpoint_access",
    metadata,
    sa.Column("name", sa.String(MAX_NAME_LENGTH), primary_key=True),
    sa.Column("relation", sa.String(16), primary_key=True),  # "owner" or "caller"
    sa.Column("principal", sa.String(MAX_PRINCIPAL_LENGTH), primary_key=True),
)

# Append-only: rows are inserted with the change they describe and removed only by retention.
audit_table = sa.Table(
    "tabpy_audit",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # SQLite: the rowid
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("at", sa.BigInteger, nullable=False),  # milliseconds since the epoch, UTC
    sa.Column("principal", sa.String(MAX_PRINCIPAL_LENGTH), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("endpoint", sa.String(MAX_NAME_LENGTH), nullable=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("client", sa.String(255), nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Index("ix_tabpy_audit_at", "at"),
    sa.Index("ix_tabpy_audit_principal", "principal"),
    sa.Index("ix_tabpy_audit_endpoint", "endpoint"),
)

# --- the fleet ------------------------------------------------------------------------------------

# One row per running instance (tabpy.registry.members), rewritten by its heartbeat.
members_table = sa.Table(
    "tabpy_members",
    metadata,
    sa.Column("instance_id", sa.String(128), primary_key=True),  # TABPY_INSTANCE_ID
    sa.Column("http_url", sa.String(512), nullable=False),  # where the fleet reaches its HTTP
    sa.Column("flight_url", sa.String(512), nullable=True),  # its Arrow Flight; null: none
    sa.Column("version", sa.String(64), nullable=False),  # the server's version
    sa.Column("started_at", sa.BigInteger, nullable=False),  # milliseconds since the epoch
    sa.Column("heartbeat_at", sa.BigInteger, nullable=False),  # milliseconds since the epoch
    sa.Column("catalog_revision", sa.BigInteger, nullable=False),  # the revision it has read
    sa.Column("loaded", sa.Text, nullable=False),  # JSON: {name: [version, load status]}
)
