"""The fleet's membership: the instances sharing this registry, kept in ``tabpy_members``.

Each running server owns one row, keyed by its ``TABPY_INSTANCE_ID``: where the others reach it
(its internal HTTP and Arrow Flight addresses), its version, when it started, when it last
beat, and what it has loaded (the catalog revision it has read and each endpoint's version and
load status). A heartbeat is one ``UPDATE`` of that row (an ``INSERT`` the first time, or after
another member expired it), so the registry's write load is one row per instance per
``TABPY_MEMBER_HEARTBEAT_SECONDS``.

A member whose heartbeat is older than its expiry (:data:`MISSED_BEATS` beats) is dead: lists
ignore it, and :func:`expire` deletes it. Nothing else is needed when an instance dies with
``kill -9``; a clean shutdown deletes its own row at once (:func:`deregister`).

Times are the members' own clocks in milliseconds, so their clocks must agree to well within
an expiry (NTP does). The functions take a :class:`~sqlalchemy.engine.Engine`, run one short
transaction each, and raise SQLAlchemy's errors: the caller decides what an outage means.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tabpy.registry.database import write_transaction
from tabpy.registry.tables import members_table

__all__ = [
    "MISSED_BEATS",
    "Loaded",
    "Member",
    "deregister",
    "expire",
    "heartbeat",
    "live_members",
]

#: Heartbeats a member may miss before the others treat it as gone.
MISSED_BEATS = 3


@dataclass(frozen=True)
class Loaded:
    """What a member has loaded: the registry revision it has read, and each endpoint's state.

    ``endpoints`` maps a name to ``(version, status)``, the status in TabPy's words
    (``LoadSuccessful``, ``LoadFailed``, ``LoadInProgress``).
    """

    revision: int = -1
    endpoints: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps({name: list(state) for name, state in sorted(self.endpoints.items())})

    @staticmethod
    def decode(revision: int, text: str) -> Loaded:
        try:
            raw = json.loads(text)
            endpoints = {str(name): (int(v), str(s)) for name, (v, s) in raw.items()}
        except (ValueError, TypeError, AttributeError):
            endpoints = {}  # written by something else: treated as nothing loaded
        return Loaded(revision, endpoints)

    def has_loaded(self, name: str, revision: int) -> bool:
        """True once this member has read ``revision`` or later and finished loading ``name``
        (successfully or not; a name it no longer has was removed since, which also counts)."""
        if self.revision < revision:
            return False
        state = self.endpoints.get(name)
        return state is None or state[1] != "LoadInProgress"


@dataclass(frozen=True)
class Member:
    instance_id: str
    http_url: str
    flight_url: str | None
    version: str
    started_at: int  # milliseconds since the epoch
    heartbeat_at: int  # milliseconds since the epoch
    loaded: Loaded

    def as_json(self, now_ms: int) -> dict[str, object]:
        """For ``/status?members=1`` and the status page."""
        return {
            "instance_id": self.instance_id,
            "http_url": self.http_url,
            "flight_url": self.flight_url,
            "version": self.version,
            "started_at": self.started_at / 1000,
            "heartbeat_age_seconds": round(max(now_ms - self.heartbeat_at, 0) / 1000, 3),
            "catalog_revision": self.loaded.revision,
            "endpoints": {
                name: {"version": version, "status": status}
                for name, (version, status) in sorted(self.loaded.endpoints.items())
            },
        }


def now_ms() -> int:
    return int(time.time() * 1000)


def heartbeat(engine: Engine, member: Member) -> None:
    """Write ``member``'s row: one ``UPDATE``, or the ``INSERT`` of a new (or expired) member."""
    values = _row(member)
    with write_transaction(engine) as conn:
        table = members_table
        updated = conn.execute(
            sa.update(table).where(table.c.instance_id == member.instance_id).values(values)
        )
        if updated.rowcount == 0:
            conn.execute(sa.insert(table).values(instance_id=member.instance_id, **values))


def deregister(engine: Engine, instance_id: str) -> None:
    """Remove this instance's row (a clean shutdown): the others stop counting on it at once."""
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(members_table).where(members_table.c.instance_id == instance_id))


def expire(engine: Engine, expiry_ms: int, at_ms: int | None = None) -> int:
    """Delete the members whose last heartbeat is more than ``expiry_ms`` old; how many."""
    cutoff = (now_ms() if at_ms is None else at_ms) - expiry_ms
    with write_transaction(engine) as conn:
        gone = conn.execute(sa.delete(members_table).where(members_table.c.heartbeat_at < cutoff))
        return int(gone.rowcount or 0)


def live_members(engine: Engine, expiry_ms: int, at_ms: int | None = None) -> list[Member]:
    """The members that beat within ``expiry_ms``, by instance id."""
    cutoff = (now_ms() if at_ms is None else at_ms) - expiry_ms
    table = members_table
    query = sa.select(table).where(table.c.heartbeat_at >= cutoff).order_by(table.c.instance_id)
    with engine.connect() as conn:
        return [_member(row) for row in conn.execute(query)]


def _row(member: Member) -> dict[str, object]:
    return {
        "http_url": member.http_url,
        "flight_url": member.flight_url,
        "version": member.version,
        "started_at": member.started_at,
        "heartbeat_at": member.heartbeat_at,
        "catalog_revision": member.loaded.revision,
        "loaded": member.loaded.encode(),
    }


def _member(row: sa.Row[object]) -> Member:
    values = row._mapping
    return Member(
        instance_id=values["instance_id"],
        http_url=values["http_url"],
        flight_url=values["flight_url"],
        version=values["version"],
        started_at=int(values["started_at"]),
        heartbeat_at=int(values["heartbeat_at"]),
        loaded=Loaded.decode(int(values["catalog_revision"]), values["loaded"]),
    )
