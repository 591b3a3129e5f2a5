"""The server's name, description and CORS values, shared by every instance through the registry.

TabPy keeps them in ``state.ini`` (:mod:`tabpy.registry.service_info`), one file per server, so
the instances of a fleet could each say something else. Here the registry holds one copy (a
``tabpy_meta`` row), and every instance serves that copy:

* the first instance to start on a registry without one imports its ``state.ini`` values, as
  the endpoints are imported;
* an instance whose ``state.ini`` values were edited since it last synchronised them writes
  them to the registry at start, for the whole fleet (so a single server behaves as TabPy: edit
  ``state.ini``, restart, and the new values are served). Each instance remembers what it last
  synchronised in ``<state>/service_info.synced`` (a digest, nothing else);
* an instance that joins with a ``state.ini`` it has never synchronised takes the registry's.

A write sends a ``settings`` change notification, so the other instances serve the new values at
once (PostgreSQL) or from their next start. ``Subdirectory`` (the URL prefix) is not shared: it
shapes each instance's routes when it starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import sqlalchemy as sa

from tabpy._files import write_atomically
from tabpy.registry.database import notify_change
from tabpy.registry.service_info import ServiceInfo
from tabpy.registry.store import Registry, set_meta
from tabpy.registry.tables import meta_table

__all__ = ["SERVICE_INFO_KEY", "SYNCED_FILE", "fleet_service_info", "sync_service_info"]

logger = logging.getLogger(__name__)

#: The ``tabpy_meta`` key of the shared values (a JSON object).
SERVICE_INFO_KEY = "service_info"
#: In the state folder: the digest of the ``state.ini`` values this instance last synchronised.
SYNCED_FILE = "service_info.synced"
#: The fields every instance shares (all of ServiceInfo but the URL prefix).
SHARED_FIELDS = tuple(f.name for f in dataclasses.fields(ServiceInfo) if f.name != "subdirectory")


def sync_service_info(registry: Registry, local: ServiceInfo, state_path: Path) -> ServiceInfo:
    """At start: what this instance serves, after importing or pushing its ``state.ini`` values."""
    values = _shared(local)
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
    marker = state_path / SYNCED_FILE
    synced = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
    stored = _read(registry)
    if stored is None:
        stored = _insert(registry, values)
    elif synced is not None and synced != digest and stored != values:
        _write(registry, values)
        logger.info("state.ini [Service Info] changed: every instance now serves it")
        stored = values
    elif synced is None and stored != values:
        logger.info(
            "Serving the fleet's name, description and CORS values from the registry rather "
            "than this instance's state.ini; edit state.ini on a synchronised instance and "
            "restart it to change them"
        )
    try:
        write_atomically(marker, digest + "\n")
    except OSError as err:  # only costs an edit being taken for a joining file next time
        logger.warning("Cannot write %s (%s)", marker, err.strerror or err)
    return _merge(local, stored)


def fleet_service_info(registry: Registry, local: ServiceInfo) -> ServiceInfo:
    """The values the fleet serves now (after a ``settings`` notification)."""
    stored = _read(registry)
    return local if stored is None else _merge(local, stored)


def _shared(info: ServiceInfo) -> dict[str, str]:
    return {name: getattr(info, name) for name in SHARED_FIELDS}


def _merge(local: ServiceInfo, stored: dict[str, str]) -> ServiceInfo:
    known = {name: str(stored[name]) for name in SHARED_FIELDS if name in stored}
    return dataclasses.replace(local, **known)


def _read(registry: Registry) -> dict[str, str] | None:
    text = registry.get_meta(SERVICE_INFO_KEY)
    if text is None:
        return None
    try:
        stored = json.loads(text)
    except ValueError:
        return None
    return stored if isinstance(stored, dict) else None


def _insert(registry: Registry, values: dict[str, str]) -> dict[str, str]:
    """Store ``values`` unless another instance did first; the values that won."""
    try:
        with registry.transaction() as conn:
            conn.execute(
                sa.insert(meta_table).values(key=SERVICE_INFO_KEY, value=json.dumps(values))
            )
            notify_change(conn, "settings")
    except sa.exc.IntegrityError:  # instances starting together: the first one's values stand
        return _read(registry) or values
    return values


def _write(registry: Registry, values: dict[str, str]) -> None:
    with registry.transaction() as conn:
        set_meta(conn, SERVICE_INFO_KEY, json.dumps(values))
        notify_change(conn, "settings")
