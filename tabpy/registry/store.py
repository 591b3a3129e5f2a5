"""The durable registry of endpoints, versions and artifacts (SQLAlchemy Core).

Every change is one database transaction, so a crash at any moment (``kill
-9`` mid-deploy included) leaves either the old state or the new one.  The
default database is SQLite in WAL mode under the state path; any SQLAlchemy URL
(PostgreSQL for several instances sharing one registry) works unchanged.  The
tables are in :mod:`tabpy.registry.tables`; a server brings them up to date
when it opens the registry (:mod:`tabpy.registry.migrate`).

Artifacts (the pickled functions) live in the database too, addressed by their
SHA-256, so every instance and every worker reads the same bytes and no shared
disk is needed.  ``revision`` grows with every change: servers and workers
compare it to know when their cached view is stale.

Concurrent deploys of one name (on this instance or on others sharing the database) are
decided in the transaction: an update locks the endpoint's row, so each gets the next version
in turn; a create that finds the name taken, or loses the insert, is :class:`DeployRaced`
(409), unless it asked to ``override``, which makes it the next version. A database that
cannot be reached during a change is :class:`RegistryUnavailable` (503, ``Retry-After``).

Each version also keeps the description, docstring and schema the endpoint had
while it was current, so a rollback restores them with the code.

Who may change what is stored here too (:mod:`tabpy.registry.grants`), and every change made
on someone's behalf (an :class:`~tabpy.registry.audit.Actor`) writes its audit entry in the
change's own transaction (:mod:`tabpy.registry.audit`). Ownership is checked in that
transaction as well, by a callback from the caller, so the owners it sees are the ones the
change is made under; a refusal is audited on its own and the change never happens.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tabpy.environments.spec import EnvironmentSpec, stored_locks, with_lock
from tabpy.errors import PermissionDenied
from tabpy.registry import audit, grants
from tabpy.registry.audit import Action, Actor, AuditEntry, AuditQuery, Outcome
from tabpy.registry.database import create_engine, notify_change, write_transaction
from tabpy.registry.deploy_request import DeployRequest, EndpointFields
from tabpy.registry.endpoint import Endpoint, Version
from tabpy.registry.grants import AccessChange, EndpointAccess, StoredAccess
from tabpy.registry.registry_errors import (
    DeployRaced,
    LastAdmin,
    RegistryUnavailable,
    UnknownArtifact,
    UnknownEndpoint,
    UnknownVersion,
)
from tabpy.registry.tables import artifacts_table, endpoints_table, meta_table, versions_table

__all__ = ["ORPHAN_GRACE_SECONDS", "Authorize", "Registry", "display_url", "unavailable_errors"]

logger = logging.getLogger(__name__)

#: Unreferenced uploads younger than this are kept: a deploy may be about to use them.
ORPHAN_GRACE_SECONDS = 3600
#: How often (at most) a change also removes audit entries past their retention.
PRUNE_SECONDS = 3600

#: Checks, inside a change's transaction, that it may be made on this endpoint; raises
#: ``PermissionDenied`` if not (``tabpy.security.access.Authorization.require_owner``).
Authorize = Callable[[EndpointAccess], None]
#: Told (action, outcome) after each audit entry is committed: the server counts them.
AuditListener = Callable[[str, str], None]

#: An ``override`` create that loses the insert to a concurrent create retries as an update.
_CREATE_ATTEMPTS = 3

#: What a version remembers of its endpoint, as stored (``schema`` is JSON text).
_VERSION_FIELDS = ("description", "docstring", "schema")


def display_url(url: str) -> str:
    """The registry URL as logs and the status page may show it: never with its password."""
    try:
        return str(sa.engine.make_url(url).render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - a URL we cannot parse may still hold a secret
        return "(set)"


class Registry:
    """Synchronous access to the registry; the server calls it from a thread.

    ``create`` (what a server does at start) brings the schema up to date first, or
    refuses a registry newer than this code; without it the schema is used as it is.
    """

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        password: str | None = None,
        audit_retention_days: int = 0,
        migrate_apart: bool = False,
    ) -> None:
        """``migrate_apart``: an upgrade that needs Alembic runs in a child process
        (:mod:`tabpy.registry.migrate_apart`), which the server wants: Alembic would stay in
        its memory for good."""
        self.url = url
        self.audit_retention_days = audit_retention_days
        self.on_audit: AuditListener | None = None
        self._pruned_at = -float("inf")
        self.engine = create_engine(url, password)
        if create:
            # Imported here: workers open the registry as it is and never load Alembic.
            from tabpy.registry.migrate import schema_is_current, upgrade_schema
            from tabpy.registry.migrate_apart import in_memory, upgrade_apart

            try:
                if not migrate_apart or in_memory(url):
                    upgrade_schema(self.engine)
                elif schema_is_current(self.engine) is None:
                    upgrade_apart(url, password)
            except BaseException:
                self.engine.dispose()
                raise

    def close(self) -> None:
        self.engine.dispose()

    # --- reading ---------------------------------------------------------------------------

    def revision(self) -> int:
        with self.engine.connect() as conn:
            return _revision(conn)

    def snapshot(self) -> tuple[int, dict[str, Endpoint]]:
        """A consistent view: the revision and every endpoint, read in one transaction."""
        query = _with_current_version().order_by(endpoints_table.c.name)
        with self.engine.connect() as conn, conn.begin():
            revision = _revision(conn)
            return revision, {row.name: _endpoint(row) for row in conn.execute(query)}

    def get(self, name: str) -> Endpoint:
        with unavailable_errors(), self.engine.connect() as conn:
            return _get(conn, name)

    def names(self) -> set[str]:
        """The names deployed now, read from the database (not from any instance's cache)."""
        with unavailable_errors(), self.engine.connect() as conn:
            return set(conn.execute(sa.select(endpoints_table.c.name)).scalars())

    def versions(self, name: str) -> list[Version]:
        """Every version of ``name``, oldest first, the one served now marked ``current``."""
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
        with unavailable_errors(), self.engine.connect() as conn, conn.begin():
            current = _get(conn, name).version
            return [_version(row, current) for row in conn.execute(query)]

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
        try:
            with self._write() as conn:
                if _has_artifact(conn, sha256):
                    return False
                _insert_artifact(conn, sha256, data)
                return True
        except sa.exc.IntegrityError:  # the same bytes, uploaded at the same time elsewhere
            return False

    def deploy(
        self,
        request: DeployRequest,
        artifact: str | None,
        *,
        actor: Actor | None = None,
        access: AccessChange | None = None,
        authorize: Authorize | None = None,
    ) -> Endpoint:
        """Apply a validated deploy; ``artifact`` is the new version's object, if it makes one.

        Whether the name is deployed is checked again here, in the transaction: the
        request was validated against a view that another instance may have changed since.
        ``access`` sets owners and callers; ``authorize`` vets an update against the current
        owners (a creation has none yet). A create that finds the name taken becomes the next
        version with ``override``, and is :class:`DeployRaced` without it.
        """
        action: Action = "deploy" if request.creates else "update"

        def change(conn: Connection) -> tuple[Endpoint, str]:
            created = request.creates and _find(conn, request.name) is None
            if created:
                endpoint = _create(conn, request, artifact)
            elif request.creates and not request.override:
                raise DeployRaced(request.name)
            else:
                _authorize(conn, request.name, authorize)
                endpoint = _update(conn, request, artifact)
            detail = _deploy_detail(request, artifact)
            if access is not None and grants.set_access(conn, request.name, access):
                detail += _access_detail(access)
            elif created:
                grants.bump_access_revision(conn)  # a new endpoint: no stale rules of the name
            return endpoint, detail

        for attempt in range(_CREATE_ATTEMPTS):
            try:
                return self._change(actor, action, request.name, change)
            except sa.exc.IntegrityError:  # lost the insert to a concurrent create
                if not request.override or attempt + 1 == _CREATE_ATTEMPTS:
                    raise DeployRaced(request.name) from None
        raise AssertionError("unreachable")

    def rollback(
        self,
        name: str,
        version: int,
        *,
        actor: Actor | None = None,
        authorize: Authorize | None = None,
    ) -> Endpoint:
        """Serve an earlier version again, as a new version number.

        The object, description, docstring and schema are the old version's (the ones
        it did not record stay as they are). A new number (rather than moving back) keeps
        versions increasing, so caches keyed by (name, version) in workers and other
        instances stay valid.
        """

        def change(conn: Connection) -> tuple[Endpoint, str]:
            current = _get(conn, name, lock=True)
            _authorize(conn, name, authorize)
            row = conn.execute(
                sa.select(versions_table).where(
                    versions_table.c.name == name, versions_table.c.version == version
                )
            ).first()
            if row is None:
                raise UnknownVersion(name, version)
            restored = {
                field: getattr(row, field)
                for field in _VERSION_FIELDS
                if getattr(row, field) is not None
            }
            about = {**_about(_row(current)), **restored}
            new_version = current.version + 1
            _add_version(conn, name, new_version, row.artifact, about, row.environment)
            conn.execute(
                sa.update(endpoints_table)
                .where(endpoints_table.c.name == name)
                .values(version=new_version, last_modified_time=_now(), **restored)
            )
            _bump_revision(conn)
            detail = f"restored version {version}"
            if row.environment is not None:
                spec = EnvironmentSpec.from_text(row.environment)
                detail += f", environment {spec.summary()}"
            return _get(conn, name), detail

        return self._change(actor, "rollback", name, change)

    def delete(
        self, name: str, *, actor: Actor | None = None, authorize: Authorize | None = None
    ) -> None:
        def change(conn: Connection) -> tuple[Endpoint, str]:
            endpoint = _get(conn, name)
            _authorize(conn, name, authorize)
            conn.execute(sa.delete(endpoints_table).where(endpoints_table.c.name == name))
            conn.execute(sa.delete(versions_table).where(versions_table.c.name == name))
            grants.remove_access(conn, name)
            _collect_orphans(conn)
            _bump_revision(conn)
            return endpoint, "removed with every version"

        self._change(actor, "delete", name, change)

    # --- environments' locks ----------------------------------------------------------------

    def recorded_lock(self, spec: EnvironmentSpec, python_version: str) -> str | None:
        """The lock ``spec`` resolved to for ``python_version``, if an instance recorded one.

        A lock is recorded with every version whose environment is ``spec``: the first
        resolution anywhere in the fleet is the one every instance builds.
        """
        with unavailable_errors(), self.engine.connect() as conn:
            return _recorded_lock(conn, spec.to_text(), python_version)

    def record_lock(self, spec: EnvironmentSpec, python_version: str, lock: str, key: str) -> str:
        """Record ``lock`` for ``spec`` unless one is recorded already; the one that stands.

        One transaction, which changes only the versions' environment column: no revision,
        version or modification time moves, so no instance or client sees an endpoint change.
        """
        text = spec.to_text()
        with self._write() as conn:
            rows = conn.execute(
                sa.select(
                    versions_table.c.name, versions_table.c.version, versions_table.c.environment
                )
                .where(versions_table.c.environment.is_not(None))
                .with_for_update()
            ).all()
            matching = [row for row in rows if _same_spec(row.environment, text)]
            standing, key = _recorded_lock_in(matching, python_version) or (lock, key)
            for row in matching:
                if python_version in stored_locks(row.environment):
                    continue
                conn.execute(
                    sa.update(versions_table)
                    .where(
                        versions_table.c.name == row.name, versions_table.c.version == row.version
                    )
                    .values(environment=with_lock(row.environment, python_version, standing, key))
                )
            return standing

    # --- who may do what -------------------------------------------------------------------

    def access_revision(self) -> int:
        with self.engine.connect() as conn:
            return grants.access_revision(conn)

    def access_rules(self) -> StoredAccess:
        """Every grant, owner and caller, read in one transaction."""
        with self.engine.connect() as conn, conn.begin():
            return grants.read_access(conn)

    def endpoint_access(self, name: str) -> EndpointAccess:
        with self.engine.connect() as conn, conn.begin():
            _get(conn, name)
            return grants.endpoint_access(conn, name)

    def grant(self, principal: str, role: str, actor: Actor) -> bool:
        """Give ``principal`` (a reference) ``role``; False if it already had it."""
        with self._write() as conn:
            added = grants.add_grant(conn, principal, role, actor.principal, _now())
            if added:
                self._audit(conn, actor, "grant", "allowed", detail=f"{role} to {principal}")
        if added:
            self._notify("grant", "allowed")
        return added

    def revoke(
        self, principal: str, role: str, actor: Actor, *, keep_an_admin: bool = False
    ) -> bool:
        """Take ``role`` from ``principal``; False if it did not have it.

        ``keep_an_admin`` refuses to remove the last ``admin`` grant (over HTTP nobody could
        grant one again; ``tabpy-user`` can, so it does not ask for this).
        """
        with self._write() as conn:
            if keep_an_admin and role == "admin" and grants.holders(conn, role) == {principal}:
                raise LastAdmin(principal)
            removed = grants.remove_grant(conn, principal, role)
            if removed:
                self._audit(conn, actor, "revoke", "allowed", detail=f"{role} from {principal}")
        if removed:
            self._notify("revoke", "allowed")
        return removed

    def grants(self) -> dict[str, set[str]]:
        """Principal reference -> roles granted, for every principal with a grant."""
        return self.access_rules().grants

    # --- the audit trail -------------------------------------------------------------------

    def record(
        self,
        actor: Actor,
        action: Action,
        outcome: Outcome,
        *,
        endpoint: str | None = None,
        version: int | None = None,
        detail: str | None = None,
    ) -> None:
        """Audit something that is not a registry change (a refusal, a Flight shutdown)."""
        with self._write() as conn:
            self._audit(
                conn, actor, action, outcome, endpoint=endpoint, version=version, detail=detail
            )
        self._notify(action, outcome)

    def audit(self, query: AuditQuery) -> list[AuditEntry]:
        with self.engine.connect() as conn:
            return audit.read_entries(conn, query)

    def prune_audit(self) -> int:
        """Remove entries past ``TABPY_AUDIT_RETENTION_DAYS`` now; how many went."""
        if self.audit_retention_days <= 0:
            return 0
        with self._write() as conn:
            self._pruned_at = time.monotonic()
            return audit.prune(conn, self.audit_retention_days)

    def _change(
        self,
        actor: Actor | None,
        action: Action,
        name: str,
        change: Callable[[Connection], tuple[Endpoint, str]],
    ) -> Endpoint:
        """Run ``change`` and its audit entry in one transaction; audit a refusal on its own."""
        try:
            with self._write() as conn:
                endpoint, detail = change(conn)
                if actor is not None:
                    version = endpoint.version
                    self._audit(
                        conn,
                        actor,
                        action,
                        "allowed",
                        endpoint=name,
                        version=version,
                        detail=detail,
                    )
        except PermissionDenied as refusal:
            if actor is not None:
                self.record(actor, action, "refused", endpoint=name, detail=refusal.message)
            raise
        if actor is not None:
            self._notify(action, "allowed")
        return endpoint

    def _audit(
        self,
        conn: Connection,
        actor: Actor,
        action: Action,
        outcome: Outcome,
        *,
        endpoint: str | None = None,
        version: int | None = None,
        detail: str | None = None,
    ) -> None:
        audit.insert_entry(
            conn, actor, action, outcome, endpoint=endpoint, version=version, detail=detail
        )
        if self.audit_retention_days > 0 and time.monotonic() - self._pruned_at > PRUNE_SECONDS:
            self._pruned_at = time.monotonic()
            audit.prune(conn, self.audit_retention_days)

    def _notify(self, action: str, outcome: str) -> None:
        if self.on_audit is not None:
            self.on_audit(action, outcome)

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
        with unavailable_errors(), write_transaction(self.engine) as conn:
            yield conn


@contextmanager
def unavailable_errors() -> Iterator[None]:
    """Turn "the database cannot be reached" into :class:`RegistryUnavailable`.

    The driver's words (host, port, socket path) go to the log, never to the client.
    Constraint violations are left alone: they are about the data, not the connection.
    """
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
        logger.warning("Registry unavailable: %s", (str(exc).splitlines() or [""])[0])
        raise RegistryUnavailable() from None
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        logger.warning("Registry connection lost: %s", (str(exc).splitlines() or [""])[0])
        raise RegistryUnavailable() from None


# --- helpers on a connection (shared with the legacy import) --------------------------------


def set_meta(conn: Connection, key: str, value: str) -> None:
    """Write ``key`` as one upsert where the database has one, so that instances starting
    together and writing the same key do not fail on its unique index."""
    # The dialects' modules are imported here: PostgreSQL's is 2 MB a SQLite server never needs.
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        upsert = postgresql_insert(meta_table).values(key=key, value=value)
        conn.execute(upsert.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
        return
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        upsert_ = sqlite_insert(meta_table).values(key=key, value=value)
        conn.execute(upsert_.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
        return
    conn.execute(sa.delete(meta_table).where(meta_table.c.key == key))
    conn.execute(sa.insert(meta_table).values(key=key, value=value))


def insert_artifact(conn: Connection, sha256: str, data: bytes) -> None:
    if not _has_artifact(conn, sha256):
        _insert_artifact(conn, sha256, data)


def insert_endpoint(conn: Connection, endpoint: Endpoint, versions: dict[int, str | None]) -> None:
    """Add an endpoint with the given versions, each recorded with the endpoint's fields."""
    values = _row(endpoint)
    conn.execute(sa.insert(endpoints_table).values(**values))
    for version, artifact in sorted(versions.items()):
        _add_version(conn, endpoint.name, version, artifact, _about(values))
    _bump_revision(conn)


def _create(conn: Connection, request: DeployRequest, artifact: str | None) -> Endpoint:
    _require_artifact(conn, artifact)
    now = _now()
    fields = request.fields
    endpoint = Endpoint(
        name=request.name,
        type=fields["type"],
        version=1,
        description=fields["description"],
        docstring=fields["docstring"],
        schema=fields["schema"],
        is_public=fields["is_public"],
        dependencies=fields["dependencies"],
        target=fields["target"],
        creation_time=now,
        last_modified_time=now,
    )
    values = _row(endpoint)
    conn.execute(sa.insert(endpoints_table).values(**values))
    _add_version(conn, endpoint.name, 1, artifact, _about(values), _spec_text(request))
    _bump_revision(conn)
    return _get(conn, request.name)


def _update(conn: Connection, request: DeployRequest, artifact: str | None) -> Endpoint:
    name = request.name
    # Locked until commit: concurrent updates of this endpoint take their versions in turn.
    current = _get(conn, name, lock=True)
    values = {**_row(current), **_encode(request.fields), "last_modified_time": _now()}
    if request.new_version:
        _require_artifact(conn, artifact)
        values["version"] = current.version + 1
        _add_version(conn, name, values["version"], artifact, _about(values), _spec_text(request))
    else:
        # The current version now says this about itself; a later rollback to it restores it.
        conn.execute(
            sa.update(versions_table)
            .where(versions_table.c.name == name, versions_table.c.version == current.version)
            .values(**_about(values))
        )
    conn.execute(sa.update(endpoints_table).where(endpoints_table.c.name == name).values(**values))
    _bump_revision(conn)
    return _get(conn, name)


def _authorize(conn: Connection, name: str, authorize: Authorize | None) -> None:
    if authorize is not None:
        authorize(grants.endpoint_access(conn, name))


def _deploy_detail(request: DeployRequest, artifact: str | None) -> str:
    if request.creates:
        made = f"created as {request.fields.get('type', 'model')}"
    elif request.new_version:
        made = "new version"
    else:
        made = "changed " + (", ".join(sorted(request.fields)) or "nothing but its access")
    made = f"{made}, artifact {artifact}" if artifact is not None else made
    if request.environment is not None:
        made += f", environment {request.environment.summary()}"
    return made


def _spec_text(request: DeployRequest) -> str | None:
    return None if request.environment is None else request.environment.to_text()


def _access_detail(change: AccessChange) -> str:
    parts = []
    if change.owners is not None:
        parts.append(f"owners: {', '.join(sorted(change.owners)) or '(none)'}")
    if change.callers is not None:
        parts.append(f"callers: {', '.join(sorted(change.callers)) or '(every caller)'}")
    return "; " + "; ".join(parts)


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
    notify_change(conn, "endpoints")


def _with_current_version() -> sa.Select[Any]:
    """Endpoints with their current version's artifact and environment (none if missing)."""
    return sa.select(
        endpoints_table, versions_table.c.artifact, versions_table.c.environment
    ).select_from(
        endpoints_table.outerjoin(
            versions_table,
            sa.and_(
                versions_table.c.name == endpoints_table.c.name,
                versions_table.c.version == endpoints_table.c.version,
            ),
        )
    )


def _find(conn: Connection, name: str, *, lock: bool = False) -> Endpoint | None:
    """``lock``: hold the row until the transaction ends (PostgreSQL; SQLite's write
    transaction already excludes every other writer)."""
    if lock:
        query = sa.select(endpoints_table).where(endpoints_table.c.name == name).with_for_update()
    else:  # with the current version's artifact and environment, as a snapshot reads them
        query = _with_current_version().where(endpoints_table.c.name == name)
    row = conn.execute(query).first()
    return None if row is None else _endpoint(row)


def _get(conn: Connection, name: str, *, lock: bool = False) -> Endpoint:
    endpoint = _find(conn, name, lock=lock)
    if endpoint is None:
        raise UnknownEndpoint(name)
    return endpoint


def _has_artifact(conn: Connection, sha256: str) -> bool:
    query = sa.select(artifacts_table.c.sha256).where(artifacts_table.c.sha256 == sha256)
    return conn.execute(query).first() is not None


def _insert_artifact(conn: Connection, sha256: str, data: bytes) -> None:
    conn.execute(
        sa.insert(artifacts_table).values(
            sha256=sha256, size=len(data), data=data, created_at=_now()
        )
    )


def _require_artifact(conn: Connection, artifact: str | None) -> None:
    if artifact is not None and not _has_artifact(conn, artifact):
        raise UnknownArtifact(artifact)


def _add_version(
    conn: Connection,
    name: str,
    version: int,
    artifact: str | None,
    about: Mapping[str, Any],
    environment: str | None = None,
) -> None:
    conn.execute(
        sa.delete(versions_table).where(
            versions_table.c.name == name, versions_table.c.version == version
        )
    )
    conn.execute(
        sa.insert(versions_table).values(
            name=name,
            version=version,
            artifact=artifact,
            created_at=_now(),
            environment=environment,
            **about,
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


def _encode(fields: Mapping[str, Any] | EndpointFields) -> dict[str, Any]:
    return {k: json.dumps(v) if k in _JSON_FIELDS else v for k, v in fields.items()}


def _about(values: Mapping[str, Any]) -> dict[str, Any]:
    """The stored fields a version keeps, from an endpoint row's stored values."""
    return {field: values[field] for field in _VERSION_FIELDS}


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
        environment=_spec(getattr(row, "environment", None)),
    )


def _version(row: Any, current: int) -> Version:
    return Version(
        name=row.name,
        version=row.version,
        artifact=row.artifact or "",
        size=row.size or 0,
        created_at=row.created_at,
        description=row.description,
        docstring=row.docstring,
        schema=None if row.schema is None else json.loads(row.schema),
        current=row.version == current,
        environment=_spec(row.environment),
    )


def _same_spec(stored: str, spec_text: str) -> bool:
    try:
        return EnvironmentSpec.from_text(stored).to_text() == spec_text
    except Exception:  # noqa: BLE001 - a value this code cannot read is not this spec
        return False


def _recorded_lock_in(rows: list[Any], python_version: str) -> tuple[str, str] | None:
    """The first recorded (lock, key) for ``python_version`` among ``rows``."""
    for row in rows:
        recorded = stored_locks(row.environment).get(python_version)
        if recorded is not None and isinstance(recorded.get("lock"), str):
            return str(recorded["lock"]), str(recorded.get("key", ""))
    return None


def _recorded_lock(conn: Connection, spec_text: str, python_version: str) -> str | None:
    rows = conn.execute(
        sa.select(versions_table.c.environment).where(versions_table.c.environment.is_not(None))
    ).all()
    found = _recorded_lock_in(
        [r for r in rows if _same_spec(r.environment, spec_text)], python_version
    )
    return None if found is None else found[0]


def _spec(text: str | None) -> EnvironmentSpec | None:
    return None if text is None else EnvironmentSpec.from_text(text)
