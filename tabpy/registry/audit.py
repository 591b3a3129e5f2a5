"""The audit trail: who changed what, when, from where, and whether it was allowed.

An entry is written by the registry in the same transaction as the change it describes
(:class:`~tabpy.registry.store.Registry`), so one cannot exist without the other, whatever
crashes when. A refused attempt changes nothing and is written on its own. Nothing here updates
or deletes an entry, except retention (``TABPY_AUDIT_RETENTION_DAYS``), which removes whole
days from the old end.

Pure helpers on a connection; the registry owns the transactions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tabpy.registry.tables import audit_table

__all__ = [
    "AUDIT_ACTIONS",
    "Action",
    "Actor",
    "AuditEntry",
    "AuditQuery",
    "Outcome",
    "insert_entry",
    "prune",
    "read_entries",
]

Action = Literal[
    "deploy", "update", "delete", "rollback", "grant", "revoke", "shutdown", "environment build"
]
AUDIT_ACTIONS: tuple[Action, ...] = (
    "deploy",
    "update",
    "delete",
    "rollback",
    "grant",
    "revoke",
    "shutdown",
    "environment build",
)
#: ``allowed``: the change was made (in the entry's transaction); ``refused``: it was not;
#: ``failed``: it was allowed but did not succeed (an environment build uv could not finish).
Outcome = Literal["allowed", "refused", "failed"]

#: Longest detail kept; a refusal message or a grant never comes close.
_DETAIL_LIMIT = 2000
_CLIENT_LIMIT = 255
_REQUEST_ID_LIMIT = 128
_PRINCIPAL_LIMIT = 255


@dataclass(frozen=True)
class Actor:
    """Who asks for a change, and from where: the first half of every entry."""

    #: ``user:alice``, ``user:<token sub>``, ``anonymous`` or ``local:<os user>`` (the CLI).
    principal: str
    client: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    #: Milliseconds since the epoch (UTC).
    at: int
    principal: str
    action: str
    endpoint: str | None
    version: int | None
    outcome: str
    client: str | None
    request_id: str | None
    detail: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": _iso(self.at),
            "timestamp": self.at / 1000,
            "principal": self.principal,
            "action": self.action,
            "endpoint": self.endpoint,
            "version": self.version,
            "outcome": self.outcome,
            "client": self.client,
            "request_id": self.request_id,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditQuery:
    """Filters (all optional, combined with "and") and a page: newest first, ``limit`` entries
    with ids below ``before`` (the ``next`` cursor of the previous page)."""

    principal: str | None = None
    endpoint: str | None = None
    action: str | None = None
    outcome: str | None = None
    #: Milliseconds since the epoch, inclusive.
    since: int | None = None
    #: Milliseconds since the epoch, exclusive.
    until: int | None = None
    before: int | None = None
    limit: int = 100


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def insert_entry(
    conn: Connection,
    actor: Actor,
    action: Action,
    outcome: Outcome,
    *,
    endpoint: str | None = None,
    version: int | None = None,
    detail: str | None = None,
) -> None:
    conn.execute(
        sa.insert(audit_table).values(
            at=now_ms(),
            principal=actor.principal[:_PRINCIPAL_LIMIT],
            action=action,
            endpoint=endpoint,
            version=version,
            outcome=outcome,
            client=_cut(actor.client, _CLIENT_LIMIT),
            request_id=_cut(actor.request_id, _REQUEST_ID_LIMIT),
            detail=_cut(detail, _DETAIL_LIMIT),
        )
    )


def read_entries(conn: Connection, query: AuditQuery) -> list[AuditEntry]:
    table = audit_table
    conditions = []
    for column, value in (
        (table.c.principal, query.principal),
        (table.c.endpoint, query.endpoint),
        (table.c.action, query.action),
        (table.c.outcome, query.outcome),
    ):
        if value is not None:
            conditions.append(column == value)
    if query.since is not None:
        conditions.append(table.c.at >= query.since)
    if query.until is not None:
        conditions.append(table.c.at < query.until)
    if query.before is not None:
        conditions.append(table.c.id < query.before)
    statement = sa.select(table).where(*conditions).order_by(table.c.id.desc()).limit(query.limit)
    return [AuditEntry(**row._mapping) for row in conn.execute(statement)]


def prune(conn: Connection, retention_days: int) -> int:
    """Remove entries older than ``retention_days`` (0: keep everything); how many went."""
    if retention_days <= 0:
        return 0
    cutoff = now_ms() - retention_days * 86_400_000
    result = conn.execute(sa.delete(audit_table).where(audit_table.c.at < cutoff))
    return int(result.rowcount or 0)


def _cut(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]


def _iso(milliseconds: int) -> str:
    seconds, millis = divmod(milliseconds, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
