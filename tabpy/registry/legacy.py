"""One-time import of a TabPy 2.16 state folder into the registry.

TabPy keeps endpoint metadata in ``state.ini`` (one JSON line per endpoint plus
a docstring section) and the pickled objects in
``query_objects/<name>/<version>/pickle_archive``.  On first start against such
a folder we copy all of it into the registry in one transaction, every version
whose pickle still exists included.  The old files are only read, so the folder
still works with TabPy.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from tabpy.registry.endpoint import DEFAULT_DOCSTRING, Endpoint
from tabpy.registry.store import Registry, insert_artifact, insert_endpoint, set_meta

logger = logging.getLogger(__name__)

IMPORTED_KEY = "legacy_state_imported"
_VERSIONS = "Query Objects Service Versions"
_DOCSTRINGS = "Query Objects Docstrings"


def import_legacy_state(registry: Registry, state_path: Path) -> list[str]:
    """Import once; returns the names imported (empty on later starts)."""
    if registry.get_meta(IMPORTED_KEY) is not None:
        return []
    endpoints = list(_read_state_file(state_path))
    try:
        names = _import(registry, state_path, endpoints)
    except IntegrityError:
        # Instances starting together on one empty registry: one of them imported first.
        if registry.get_meta(IMPORTED_KEY) is None:
            raise
        return []
    if names:
        logger.info("Imported %d endpoint(s) from %s: %s", len(names), state_path, ", ".join(names))
    return names


def _import(
    registry: Registry, state_path: Path, endpoints: list[tuple[Endpoint, dict[int, bytes | None]]]
) -> list[str]:
    with registry.transaction() as conn:
        for endpoint, versions in endpoints:
            artifacts: dict[int, str | None] = {}
            for version, data in versions.items():
                if data is None:
                    archive = state_path / "query_objects" / endpoint.name / str(version)
                    logger.warning(
                        "Endpoint %r version %d: %s not found; it stays LoadFailed until "
                        "deployed again",
                        endpoint.name,
                        version,
                        archive / "pickle_archive",
                    )
                    artifacts[version] = None
                    continue
                sha256 = hashlib.sha256(data).hexdigest()
                insert_artifact(conn, sha256, data)
                artifacts[version] = sha256
            insert_endpoint(conn, endpoint, artifacts)
        set_meta(conn, IMPORTED_KEY, str(int(time.time())))
    return [endpoint.name for endpoint, _ in endpoints]


def _read_state_file(state_path: Path) -> list[tuple[Endpoint, dict[int, bytes | None]]]:
    path = state_path / "state.ini"
    if not path.is_file():
        return []
    parser = configparser.RawConfigParser(allow_no_value=True, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    if not parser.has_section(_VERSIONS):
        return []
    docstrings = dict(parser.items(_DOCSTRINGS)) if parser.has_section(_DOCSTRINGS) else {}
    found = []
    for name, raw in parser.items(_VERSIONS):
        try:
            info = json.loads(raw or "")
            endpoint = _endpoint(name, info, docstrings.get(name))
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("Skipping endpoint %r in %s: unreadable entry (%s)", name, path, exc)
            continue
        found.append((endpoint, _pickles(state_path / "query_objects" / name, endpoint.version)))
    return found


def _endpoint(name: str, info: dict[str, Any], docstring: str | None) -> Endpoint:
    return Endpoint(
        name=name,
        type=str(info.get("type") or "model"),
        version=int(info["version"]),
        description=str(info.get("description") or ""),
        docstring=docstring if docstring else DEFAULT_DOCSTRING,
        schema=info.get("schema"),
        is_public=info.get("is_public", False),
        dependencies=list(info.get("dependencies") or []),
        target=info.get("target"),
        creation_time=int(info.get("creation_time") or 0),
        last_modified_time=int(info.get("last_modified_time") or 0),
    )


def _pickles(folder: Path, current: int) -> dict[int, bytes | None]:
    """Every version folder's pickle; the current version is listed even if missing."""
    versions: dict[int, bytes | None] = {current: None}
    if folder.is_dir():
        for child in folder.iterdir():
            archive = child / "pickle_archive"
            if child.name.isdigit() and archive.is_file() and int(child.name) <= current:
                versions[int(child.name)] = archive.read_bytes()
    return versions
