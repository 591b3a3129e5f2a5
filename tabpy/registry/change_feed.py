"""Being told about registry changes as they commit (PostgreSQL ``LISTEN``), instead of polling.

Every change (deploy, update, rollback, delete, grants, fleet settings) sends ``NOTIFY`` on
:data:`~tabpy.registry.database.CHANGE_CHANNEL` in its own transaction
(:func:`~tabpy.registry.database.notify_change`). One :class:`ChangeFeed` per server holds one
extra connection, outside the pool, that ``LISTEN``s on that channel from a daemon thread and
calls every subscriber when a notification arrives. The catalog and the access rules subscribe
and re-read the registry at once; while :attr:`ChangeFeed.listening` is true they poll only as
a slow safety net.

The listening connection can die (a database restart, a failover, a network cut). The thread
then reconnects with growing pauses, and the subscribers are called on every change of
:attr:`~ChangeFeed.listening` too: going down switches them back to fast polling (which is
also how a database outage is noticed), coming back makes them re-read everything, since
notifications sent while nobody listened are lost. Serving never waits on this thread.

SQLite has no such channel: :func:`open_change_feed` returns None and polling stays as it was.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from tabpy.registry.database import CHANGE_CHANNEL

__all__ = ["FIRST_PAUSE", "LONGEST_PAUSE", "ChangeFeed", "open_change_feed"]

logger = logging.getLogger(__name__)

#: Seconds before the first reconnection; each pause doubles up to :data:`LONGEST_PAUSE`.
FIRST_PAUSE = 0.5
LONGEST_PAUSE = 5.0
#: How often the listening thread looks up from its socket to see whether it should stop.
_CHECK_STOP_SECONDS = 1.0
#: TCP keepalives on the listening connection, so a silent network cut is noticed in about
#: 10 s rather than after the kernel's two hours (libpq ignores them on a Unix socket), and a
#: bound on each connection attempt to a host that does not answer (the URL may set its own).
_KEEPALIVES = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}

#: Called with the topic of a change ("endpoints", "access", "settings"), or with "*" when
#: the feed starts or stops listening (anything may have changed meanwhile).
Subscriber = Callable[[str], None]
#: Opens a DB-API connection in autocommit mode (tests replace it).
Connect = Callable[[], object]


class ChangeFeed:
    """One ``LISTEN`` connection shared by every subscriber of a server."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = False

    @property
    def listening(self) -> bool:
        """True while notifications are being received: polling may slow down."""
        return self._listening

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` (from the feed's thread) on each change; starts the feed."""
        with self._lock:
            self._subscribers.append(subscriber)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tabpy-change-feed", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_CHECK_STOP_SECONDS + 1)

    def _run(self) -> None:
        pause = FIRST_PAUSE
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except Exception as exc:  # noqa: BLE001 - the database is down: try again later
                logger.debug("Change feed cannot connect: %s", _first_line(exc))
            else:
                pause = FIRST_PAUSE
                try:
                    self._listen(conn)
                except Exception as exc:  # noqa: BLE001 - the connection died: reconnect
                    if not self._stop.is_set():
                        logger.warning(
                            "Registry change feed lost (%s); polling until it is back",
                            _first_line(exc),
                        )
                finally:
                    self._set_listening(False)
                    _close_quietly(conn)
            if self._stop.wait(pause):
                return
            pause = min(pause * 2, LONGEST_PAUSE)

    def _listen(self, conn: object) -> None:
        conn.execute(f"LISTEN {CHANGE_CHANNEL}")  # type: ignore[attr-defined]
        self._set_listening(True)
        while not self._stop.is_set():
            for notify in conn.notifies(timeout=_CHECK_STOP_SECONDS):  # type: ignore[attr-defined]
                self._tell(str(notify.payload))

    def _set_listening(self, listening: bool) -> None:
        if listening == self._listening:
            return
        self._listening = listening
        if listening:
            logger.info("Listening for registry changes (channel %s)", CHANGE_CHANNEL)
        self._tell("*")

    def _tell(self, topic: str) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(topic)
            except Exception:  # noqa: BLE001 - one subscriber must not silence the others
                logger.exception("Registry change subscriber failed")


def open_change_feed(engine: sa.Engine) -> ChangeFeed | None:
    """A feed for a PostgreSQL registry (psycopg 3); None where polling is the only way."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return None
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    # The engine's own arguments: the same host, database, user and password (from
    # TABPY_REGISTRY_PASSWORD_FILE too) as the pool's connections.
    kwargs = {**_KEEPALIVES, **kwargs}

    def connect() -> object:
        import psycopg

        return psycopg.connect(*args, autocommit=True, **kwargs)

    return ChangeFeed(connect)


def _close_quietly(conn: object) -> None:
    with contextlib.suppress(Exception):  # it is already broken
        conn.close()  # type: ignore[attr-defined]


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
