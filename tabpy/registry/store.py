"""The durable registry of endpoints, versions and artifacts (SQLAlchemy Core).

Every change is one database transaction, so a crash at any moment (``kill
-9`` mid-deploy included) leaves either the old state or the new one.  The
default database is SQLite in WAL mode under the state path; any SQLAlchemy URL
(PostgreSQL for several instances sharing one registry) works unchanged.

Artifacts (the pickled functions) live in the database too, addressed by their
SHA-256, so every instance and every worker reads the same bytes and no shared
disk is needed.  ``revision`` grows with every change: servers and workers
compare it to know when their cached view is stale.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tabpy.registry.endpoint import Endpoint, Version
from tabpy.registry.registry_errors import (
    EndpointExists,
    UnknownArtifact,
    UnknownEndpoint,
    UnknownVersion,
)

#: Unreferenced uploads younger than this are kept: a deploy may be about to use them.
ORPHAN_GRACE_SECONDS = 3600

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
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
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
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("artifact", sa.String(64), nullable=True),  # null: legacy pickle was missing
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

artifacts_table = sa.Table(
    "tabpy_artifacts",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)


def display_url(url: str) -> str:
    """The registry URL as logs and the status page may show it: never with its password."""
    try:
        return str(sa.engine.make_url(url).render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - a URL we cannot parse may still hold a secret
        return "(set)"


class Registry:
    """Synchronous access to the registry; the server calls it from a thread."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = _create_engine(url)
        if not create:
            return
        metadata.create_all(self.engine)
        with self._write() as conn:
            if (
                conn.execute(
                    sa.select(meta_table.c.value).where(meta_table.c.key == "revision")
                ).first()
                is None
            ):
                conn.execute(sa.insert(meta_table).values(key="revision", value="0"))

    def close(self) -> None:
        self.engine.dispose()

    # --- reading ---------------------------------------------------------------------------

    def revision(self) -> int:
        with self.engine.connect() as conn:
            return _revision(conn)

    def snapshot(self) -> tuple[int, dict[str, Endpoint]]:
        """A consistent view: the revision and every endpoint, read in one transaction."""
        query = (
            sa.select(endpoints_table, versions_table.c.artifact)
            .select_from(
                endpoints_table.outerjoin(
                    versions_table,
                    sa.and_(
                        versions_table.c.name == endpoints_table.c.name,
                        versions_table.c.version == endpoints_table.c.version,
                    ),
                )
            )
            .order_by(endpoints_table.c.name)
        )
        with self.engine.connect() as conn, conn.begin():
            revision = _revision(conn)
            return revision, {row.name: _endpoint(row) for row in conn.execute(query)}

    def get(self, name: str) -> Endpoint:
        with self.engine.connect() as conn:
            return _get(conn, name)

    def versions(self, name: str) -> list[Version]:
        query = (
            sa.select(versions_table, artifacts_table.c.size)
            .select_from(
                versions_table.outerjoin(
                    artifacts_table, versions_table.c.artifact == artifacts_table.c.sha256
                )
            )
            .where(versions_table.c.name == name)
            .order_by(versions_table.c.version)
        )
        with self.engine.connect() as conn:
            _get(conn, name)
            return [
                Version(row.name, row.version, row.artifact or "", row.size or 0, row.created_at)
                for row in conn.execute(query)
            ]

    def artifact_of(self, name: str, version: int) -> bytes:
        """The pickled object of one version; raises ``LookupError`` with the reason."""
        query = (
            sa.select(versions_table.c.artifact, artifacts_table.c.data)
            .select_from(
                versions_table.outerjoin(
                    artifacts_table, versions_table.c.artifact == artifacts_table.c.sha256
                )
            )
            .where(versions_table.c.name == name, versions_table.c.version == version)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise LookupError(f"endpoint {name} has no version {version}")
        if row.data is None:
            # A null artifact comes from the legacy import: TabPy's pickle was not on disk.
            cause = (
                "its pickle_archive was not found when the TabPy state folder was imported"
                if row.artifact is None
                else f"artifact {row.artifact} is not in the registry"
            )
            raise LookupError(
                f"the object of {name} version {version} is missing ({cause}); deploy {name} again"
            )
        return bytes(row.data)

    # --- writing ---------------------------------------------------------------------------

    def put_artifact(self, sha256: str, data: bytes) -> bool:
        """Store an upload; False when the same bytes were already stored."""
        with self._write() as conn:
            if conn.execute(
                sa.select(artifacts_table.c.sha256).where(artifacts_table.c.sha256 == sha256)
            ).first():
                return False
            conn.execute(
                sa.insert(artifacts_table).values(
                    sha256=sha256, size=len(data), data=data, created_at=_now()
                )
            )
            return True

    def create(self, endpoint: Endpoint, artifact: str | None) -> Endpoint:
        with self._write() as conn:
            if _find(conn, endpoint.name) is not None:
                raise EndpointExists(endpoint.name)
            _require_artifact(conn, artifact)
            conn.execute(sa.insert(endpoints_table).values(**_row(endpoint)))
            _add_version(conn, endpoint.name, endpoint.version, artifact)
            _bump_revision(conn)
        return endpoint

    def update(
        self, name: str, changes: dict[str, Any], artifact: str | None, new_version: bool
    ) -> Endpoint:
        """Change the given fields; with ``new_version``, add a version running ``artifact``."""
        with self._write() as conn:
            current = _get(conn, name)
            values = {**_row(current), **_encode(changes), "last_modified_time": _now()}
            if new_version:
                _require_artifact(conn, artifact)
                values["version"] = current.version + 1
                _add_version(conn, name, values["version"], artifact)
            conn.execute(
                sa.update(endpoints_table).where(endpoints_table.c.name == name).values(**values)
            )
            _bump_revision(conn)
            return _get(conn, name)

    def rollback(self, name: str, version: int) -> Endpoint:
        """Serve an earlier version's object again, as a new version number.

        A new number (rather than moving back) keeps versions increasing, so
        caches keyed by (name, version) in workers and other instances stay valid.
        """
        with self._write() as conn:
            current = _get(conn, name)
            row = conn.execute(
                sa.select(versions_table.c.artifact).where(
                    versions_table.c.name == name, versions_table.c.version == version
                )
            ).first()
            if row is None:
                raise UnknownVersion(name, version)
            new_version = current.version + 1
            _add_version(conn, name, new_version, row.artifact)
            conn.execute(
                sa.update(endpoints_table)
                .where(endpoints_table.c.name == name)
                .values(version=new_version, last_modified_time=_now())
            )
            _bump_revision(conn)
            return _get(conn, name)

    def delete(self, name: str) -> None:
        with self._write() as conn:
            _get(conn, name)
            conn.execute(sa.delete(endpoints_table).where(endpoints_table.c.name == name))
            conn.execute(sa.delete(versions_table).where(versions_table.c.name == name))
            _collect_orphans(conn)
            _bump_revision(conn)

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).first()
            return None if row is None else str(row.value)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction, for multi-step changes such as the legacy import."""
        with self._write() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(tabpy_write=True) as conn, conn.begin():
            yield conn


# --- helpers on a connection (shared with the legacy import) --------------------------------


def set_meta(conn: Connection, key: str, value: str) -> None:
    conn.execute(sa.delete(meta_table).where(meta_table.c.key == key))
    conn.execute(sa.insert(meta_table).values(key=key, value=value))


def insert_artifact(conn: Connection, sha256: str, data: bytes) -> None:
    if (
        conn.execute(
            sa.select(artifacts_table.c.sha256).where(artifacts_table.c.sha256 == sha256)
        ).first()
        is None
    ):
        conn.execute(
            sa.insert(artifacts_table).values(
                sha256=sha256, size=len(data), data=data, created_at=_now()
            )
        )


def insert_endpoint(conn: Connection, endpoint: Endpoint, versions: dict[int, str | None]) -> None:
    conn.execute(sa.insert(endpoints_table).values(**_row(endpoint)))
    for version, artifact in sorted(versions.items()):
        _add_version(conn, endpoint.name, version, artifact)
    _bump_revision(conn)


def _create_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front, so two writers queue instead of
        # failing with "database is locked" when one upgrades a read lock.
        immediate = conn.get_execution_options().get("tabpy_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _now() -> int:
    return int(time.time())


def _revision(conn: Connection) -> int:
    row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "revision")).first()
    return int(row.value) if row is not None else 0


def _bump_revision(conn: Connection) -> None:
    conn.execute(
        sa.update(meta_table)
        .where(meta_table.c.key == "revision")
        .values(value=sa.cast(sa.cast(meta_table.c.value, sa.Integer) + 1, sa.Text))
    )


def _find(conn: Connection, name: str) -> Endpoint | None:
    row = conn.execute(sa.select(endpoints_table).where(endpoints_table.c.name == name)).first()
    return None if row is None else _endpoint(row)


def _get(conn: Connection, name: str) -> Endpoint:
    endpoint = _find(conn, name)
    if endpoint is None:
        raise UnknownEndpoint(name)
    return endpoint


def _require_artifact(conn: Connection, artifact: str | None) -> None:
    if artifact is None:
        return
    if (
        conn.execute(
            sa.select(artifacts_table.c.sha256).where(artifacts_table.c.sha256 == artifact)
        ).first()
        is None
    ):
        raise UnknownArtifact(artifact)


def _add_version(conn: Connection, name: str, version: int, artifact: str | None) -> None:
    conn.execute(
        sa.delete(versions_table).where(
            versions_table.c.name == name, versions_table.c.version == version
        )
    )
    conn.execute(
        sa.insert(versions_table).values(
            name=name, version=version, artifact=artifact, created_at=_now()
        )
    )


def _collect_orphans(conn: Connection) -> None:
    referenced = sa.select(versions_table.c.artifact).where(versions_table.c.artifact.is_not(None))
    conn.execute(
        sa.delete(artifacts_table).where(
            artifacts_table.c.sha256.not_in(referenced),
            artifacts_table.c.created_at < _now() - ORPHAN_GRACE_SECONDS,
        )
    )


_JSON_FIELDS = ("schema", "is_public", "dependencies")


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v) if k in _JSON_FIELDS else v for k, v in fields.items()}


def _row(endpoint: Endpoint) -> dict[str, Any]:
    return _encode(
        {
            "name": endpoint.name,
            "type": endpoint.type,
            "version": endpoint.version,
            "description": endpoint.description,
            "docstring": endpoint.docstring,
            "schema": endpoint.schema,
            "is_public": endpoint.is_public,
            "dependencies": endpoint.dependencies,
            "target": endpoint.target,
            "creation_time": endpoint.creation_time,
            "last_modified_time": endpoint.last_modified_time,
        }
    )


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        name=row.name,
        type=row.type,
        version=row.version,
        description=row.description,
        docstring=row.docstring,
        schema=json.loads(row.schema),
        is_public=json.loads(row.is_public),
        dependencies=json.loads(row.dependencies),
        target=row.target,
        creation_time=row.creation_time,
        last_modified_time=row.last_modified_time,
        artifact=getattr(row, "artifact", None),
    )
