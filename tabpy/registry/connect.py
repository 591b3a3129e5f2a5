"""Opening the registry at start-up, waiting for a database that is not up yet.

In a fleet the database and the instances start in any order (a compose file, a Kubernetes
roll-out, a reboot), so a registry that cannot be reached is retried with growing pauses for
``TABPY_REGISTRY_CONNECT_TIMEOUT`` seconds, each retry logged, before start-up gives up.
Errors that waiting cannot fix (a bad URL, a missing driver, a schema too new) are not retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlalchemy as sa

from tabpy.registry.store import Registry, display_url

__all__ = ["FIRST_PAUSE", "LONGEST_PAUSE", "connect_registry"]

logger = logging.getLogger(__name__)

#: Seconds before the first retry; each pause doubles up to :data:`LONGEST_PAUSE`.
FIRST_PAUSE = 0.5
LONGEST_PAUSE = 5.0

#: What a database that is down, starting or unreachable raises.
_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


def connect_registry(
    url: str,
    *,
    password: str | None,
    timeout: float,
    audit_retention_days: int = 0,
    migrate_apart: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Registry:
    """The opened (and migrated) registry; the last error once ``timeout`` has passed.

    ``migrate_apart``: see :class:`tabpy.registry.store.Registry`."""
    deadline = clock() + timeout
    pause = FIRST_PAUSE
    attempt = 1
    while True:
        try:
            return Registry(
                url,
                password=password,
                audit_retention_days=audit_retention_days,
                migrate_apart=migrate_apart,
            )
        except _TRANSIENT as exc:
            left = deadline - clock()
            if left <= 0:
                raise
            wait = min(pause, left)
            logger.warning(
                "Registry %s not reachable (attempt %d: %s); retrying in %.1f s, for %.0f s more",
                display_url(url),
                attempt,
                _first_line(exc),
                wait,
                left,
            )
            sleep(wait)
            pause = min(pause * 2, LONGEST_PAUSE)
            attempt += 1


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return (text.splitlines() or [type(exc).__name__])[0]
