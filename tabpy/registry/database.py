"""Opening the registry database, and the two ways of locking it.

SQLite and PostgreSQL differ in how a writer takes its lock, and only here:

* an ordinary write (:func:`write_transaction`) is one transaction. On SQLite it starts
  with ``BEGIN IMMEDIATE``, so two writers queue (for up to :data:`SQLITE_BUSY_SECONDS`)
  instead of one failing with "database is locked" when it upgrades a read lock;
* a schema change (:func:`schema_transaction`) also excludes every other instance's
  schema change until it commits: on PostgreSQL with a transaction-level advisory lock
  (DDL is transactional there, so the lock covers the whole migration); on SQLite the
  write lock of ``BEGIN IMMEDIATE`` already does. Other databases get a plain
  transaction: run one instance at a time the first time a new version starts.

A server database gets a bounded pool, at most :data:`POOL_SIZE` + :data:`POOL_OVERFLOW`
connections per instance: a catalog refresh and a readiness probe share the first one, a
deploy or the load of a new object uses the second, and anything more waits up to
:data:`POOL_TIMEOUT` seconds for one of them. On PostgreSQL each instance also holds one
``LISTEN`` connection outside the pool (:mod:`tabpy.registry.change_feed`), so a fleet of N
instances needs at most 3 N of the database's ``max_connections``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "CHANGE_CHANNEL",
    "POOL_OVERFLOW",
    "POOL_SIZE",
    "POOL_TIMEOUT",
    "SQLITE_BUSY_SECONDS",
    "create_engine",
    "notify_change",
    "schema_transaction",
    "write_transaction",
]

#: How long a SQLite writer waits for another to finish before giving up.
SQLITE_BUSY_SECONDS = 30

#: ``pg_advisory_xact_lock`` key shared by every instance migrating the registry: the
#: first 8 bytes of SHA-256("tabpy registry schema"), as a signed 64-bit integer.
SCHEMA_LOCK_KEY = -0x180A_09D0_C7B5_34B7

#: Connections a server keeps open to a server database, and how many more it may open.
POOL_SIZE = 1
POOL_OVERFLOW = 1
#: Seconds a registry call waits for a free connection before failing (as "unavailable").
POOL_TIMEOUT = 10

_WRITE = "tabpy_write"

#: The PostgreSQL ``NOTIFY`` channel every registry change is announced on
#: (:mod:`tabpy.registry.change_feed` listens to it).
CHANGE_CHANNEL = "tabpy_registry"


def create_engine(url: str, password: str | None = None) -> Engine:
    """``password`` (from ``TABPY_REGISTRY_PASSWORD_FILE``) replaces the URL's, if any."""
    if not url.startswith("sqlite"):
        target = sa.engine.make_url(url)
        if password is not None:
            target = target.set(password=password)
        return sa.create_engine(
            target,
            pool_pre_ping=True,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            pool_timeout=POOL_TIMEOUT,
        )
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}
    )

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, waiting out other processes doing the same.

    Switching a new database to WAL needs it to itself, and SQLite answers "database is
    locked" at once rather than through the busy timeout; several servers starting together
    on one new file meet exactly that. Once a file is in WAL mode the pragma is free.
    """
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed when the block ends, rolled back if it raises."""
    with engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
        yield conn


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction that no other instance's :func:`schema_transaction` overlaps."""
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        yield conn


def notify_change(conn: Connection, topic: str) -> None:
    """Announce a change of ``topic`` ("endpoints", "access", "settings") to every instance.

    On PostgreSQL this is ``NOTIFY`` inside the change's own transaction: the server delivers
    it when (and only if) the transaction commits, so a listener never reads ahead of the
    data, and a rolled-back change announces nothing. Other databases have no such channel;
    their instances find changes by polling the revisions.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :topic)"),
            {"channel": CHANGE_CHANNEL, "topic": topic},
        )
