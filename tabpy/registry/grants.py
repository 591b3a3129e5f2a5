"""Storing who may do what: role grants, and each endpoint's owners and callers.

The registry stores principal references (``user:alice``, ``group:ds``, ``role:caller``) and
role names as text it is given; their meaning and their checks are
:mod:`tabpy.security.roles`'. Helpers on a connection; the registry owns the transactions.

Every change here moves the ``access_revision`` counter, which servers poll to know when to
re-read the rules (:class:`~tabpy.security.access.Authorization`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tabpy.registry.database import notify_change
from tabpy.registry.tables import access_table, grants_table, meta_table

__all__ = [
    "ACCESS_REVISION",
    "AccessChange",
    "EndpointAccess",
    "StoredAccess",
    "Relation",
    "access_revision",
    "add_grant",
    "endpoint_access",
    "read_access",
    "remove_access",
    "remove_grant",
    "set_access",
]

ACCESS_REVISION = "access_revision"
Relation = Literal["owner", "caller"]


@dataclass(frozen=True)
class EndpointAccess:
    """Who owns an endpoint, and who may query it (empty: every caller)."""

    owners: frozenset[str] = frozenset()
    callers: frozenset[str] = frozenset()

    def as_json(self) -> dict[str, list[str]]:
        return {"owners": sorted(self.owners), "callers": sorted(self.callers)}


@dataclass(frozen=True)
class AccessChange:
    """What a deploy sets; None leaves that list as it is (an update that does not mention it)."""

    owners: frozenset[str] | None = None
    callers: frozenset[str] | None = None


@dataclass(frozen=True)
class StoredAccess:
    """Every grant and endpoint rule at one access revision."""

    revision: int
    grants: dict[str, set[str]] = field(default_factory=dict)
    owners: dict[str, set[str]] = field(default_factory=dict)
    callers: dict[str, set[str]] = field(default_factory=dict)


def access_revision(conn: Connection) -> int:
    row = conn.execute(
        sa.select(meta_table.c.value).where(meta_table.c.key == ACCESS_REVISION)
    ).first()
    return int(row.value) if row is not None else 0


def bump_access_revision(conn: Connection) -> None:
    updated = conn.execute(
        sa.update(meta_table)
        .where(meta_table.c.key == ACCESS_REVISION)
        .values(value=sa.cast(sa.cast(meta_table.c.value, sa.Integer) + 1, sa.Text))
    )
    if not updated.rowcount:
        conn.execute(sa.insert(meta_table).values(key=ACCESS_REVISION, value="1"))
    notify_change(conn, "access")


def read_access(conn: Connection) -> StoredAccess:
    stored = StoredAccess(access_revision(conn))
    for principal, role in conn.execute(sa.select(grants_table.c.principal, grants_table.c.role)):
        stored.grants.setdefault(principal, set()).add(role)
    rows = conn.execute(
        sa.select(access_table.c.name, access_table.c.relation, access_table.c.principal)
    )
    for name, relation, principal in rows:
        table = stored.owners if relation == "owner" else stored.callers
        table.setdefault(name, set()).add(principal)
    return stored


def endpoint_access(conn: Connection, name: str) -> EndpointAccess:
    rows = conn.execute(
        sa.select(access_table.c.relation, access_table.c.principal).where(
            access_table.c.name == name
        )
    )
    found: dict[str, set[str]] = {"owner": set(), "caller": set()}
    for relation, principal in rows:
        found.setdefault(relation, set()).add(principal)
    return EndpointAccess(frozenset(found["owner"]), frozenset(found["caller"]))


def set_access(conn: Connection, name: str, change: AccessChange) -> bool:
    """Replace the lists ``change`` gives; True if anything was written."""
    changed = False
    relation: Relation
    for relation, members in (("owner", change.owners), ("caller", change.callers)):
        if members is None:
            continue
        _replace(conn, name, relation, members)
        changed = True
    if changed:
        bump_access_revision(conn)
    return changed


def remove_access(conn: Connection, name: str) -> None:
    """Forget a deleted endpoint's owners and callers (a new one of that name starts afresh)."""
    conn.execute(sa.delete(access_table).where(access_table.c.name == name))
    bump_access_revision(conn)


def add_grant(conn: Connection, principal: str, role: str, granted_by: str, at: int) -> bool:
    """Grant ``role`` to ``principal``; False if it already had it."""
    exists = conn.execute(
        sa.select(grants_table.c.role).where(
            grants_table.c.principal == principal, grants_table.c.role == role
        )
    ).first()
    if exists is not None:
        return False
    conn.execute(
        sa.insert(grants_table).values(
            principal=principal, role=role, granted_at=at, granted_by=granted_by
        )
    )
    bump_access_revision(conn)
    return True


def remove_grant(conn: Connection, principal: str, role: str) -> bool:
    """Revoke ``role`` from ``principal``; False if it did not have it."""
    removed = conn.execute(
        sa.delete(grants_table).where(
            grants_table.c.principal == principal, grants_table.c.role == role
        )
    )
    if not removed.rowcount:
        return False
    bump_access_revision(conn)
    return True


def holders(conn: Connection, role: str) -> set[str]:
    rows = conn.execute(sa.select(grants_table.c.principal).where(grants_table.c.role == role))
    return {principal for (principal,) in rows}


def _replace(conn: Connection, name: str, relation: Relation, members: Collection[str]) -> None:
    conn.execute(
        sa.delete(access_table).where(
            access_table.c.name == name, access_table.c.relation == relation
        )
    )
    if members:
        conn.execute(
            sa.insert(access_table),
            [{"name": name, "relation": relation, "principal": m} for m in sorted(members)],
        )
