"""The Arrow Flight feature as the server runs it: listener, store, expiry and ``/evaluate``.

Built at start-up when ``TABPY_ARROW_ENABLE`` is true (``tabpy.arrow.create_service``),
started once the event loop runs (the Flight middleware checks credentials on it), stopped
together with the HTTP server: the listener first lets its calls finish, then the store frees
every segment.

It is also the server's :class:`~tabpy.runtime.tables.TableEvaluator`: ``/evaluate`` with
``"dataPath"`` moves no rows through the server. Once the request is known to be a table
request (:mod:`tabpy.runtime.tables` says who recognises it), the stored table's segment and an
empty one for the result are named in a table job, the worker maps the first, writes the second
(:mod:`tabpy.arrow.worker`), and the server stores the result under a new path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import cast

import orjson
import pyarrow as pa

from tabpy.arrow import TABLE_JOB
from tabpy.arrow.arrow_errors import StoreFull, TableNotFound
from tabpy.arrow.credentials import FlightAuthentication, FlightCredentials
from tabpy.arrow.flight import FlightService, Key, path_key, schema_of
from tabpy.arrow.owners import OwnerLookup, internal_authorization
from tabpy.arrow.segments import Segment
from tabpy.arrow.store import StoredTable, TableStore
from tabpy.config import ConfigError, Settings
from tabpy.errors import ExecutionFailed, PermissionDenied
from tabpy.registry.audit import Actor
from tabpy.registry.store import Registry
from tabpy.runtime.pool import WorkerPool
from tabpy.runtime.protocol import ExtensionMeta, Job, QueryCheck, TableRequest
from tabpy.security.access import Authorization
from tabpy.security.authenticator import Authenticator
from tabpy.security.principal import Principal
from tabpy.security.roles import audit_name, flight_role

__all__ = ["ArrowService"]

logger = logging.getLogger(__name__)

_MB = 1024 * 1024
#: How often expired tables are looked for, at most (a shorter time to live checks sooner).
_SWEEP_SECONDS = 30.0


class ArrowService:
    def __init__(
        self, settings: Settings, auth: object, pool: WorkerPool, registry: Registry | None = None
    ) -> None:
        """``registry`` receives the audit entries of ``shutdown`` (none without it)."""
        self.settings = settings
        self.pool = pool
        self.registry = registry
        # The same decisions as HTTP: the authenticator's (no authentication: nothing enforced).
        self.authorization = (
            auth.authorization if isinstance(auth, Authenticator) else Authorization(enabled=False)
        )
        if settings.arrow_admin_users and settings.authz:
            logger.warning(
                "TABPY_ARROW_ADMIN_USERS is deprecated: grant its users the admin role "
                "(tabpy-user grant --config <config file> -u <name> --role admin) and remove it"
            )
        self.store = TableStore(settings.arrow_max_store_mb * _MB, settings.arrow_entry_ttl_seconds)
        self.credentials = FlightCredentials(auth)
        #: The Flight addresses of the fleet's other live members (set by the wiring).
        self.peers: Callable[[], list[str]] = list
        self.owners = OwnerLookup(
            self.store, internal_authorization(settings.internal_credentials_file)
        )
        self.server: FlightService | None = None
        #: An empty segment for its caller's next result, kept while results come back in
        #: replies: (caller, segment).
        self._kept_spare: tuple[str, Segment] | None = None
        self._closed = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped = threading.Event()
        self._stopping = False

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> int:
        """Bind the Flight listener and return its port; raises ``ConfigError``."""
        settings = self.settings
        tls = _tls_certificates(settings)
        host = settings.arrow_bind_address
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        location = f"grpc+{'tls' if tls else 'tcp'}://{host}:{settings.arrowflight_port}"
        try:
            self.server = FlightService(
                location,
                self.store,
                FlightAuthentication(self.credentials, loop),
                tls_certificates=tls,
                may_shut_down=self.refuse_shutdown,
                on_shutdown=self._stop_in_background,
                may_call=self.refuse_call,
                find_elsewhere=self.find_elsewhere,
            )
        except (pa.ArrowException, OSError) as err:
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(
                f"Cannot start Arrow Flight on {location} ({detail}): set TABPY_ARROWFLIGHT_PORT "
                "to a free port (0 picks one) and TABPY_ARROW_BIND_ADDRESS to an address of this "
                "machine."
            ) from None
        threading.Thread(target=self._sweep, name="tabpy-arrow-expiry", daemon=True).start()
        port = int(self.server.port)
        where = self.server.advertised.uri.decode()
        logger.info("Arrow Flight listening on port %d (%s)", port, where)
        return port

    async def stop(self, timeout: float) -> None:
        """Stop the listener, letting calls in flight finish for up to ``timeout`` seconds."""
        if self.server is None:
            return
        self._stop_in_background()
        loop = asyncio.get_running_loop()
        # The listener stops on a daemon thread: one stuck in a call that never ends must not
        # keep the process alive; this wait is bounded.
        stopped = await loop.run_in_executor(None, self._stopped.wait, max(timeout, 1.0))
        if not stopped:
            logger.error("Arrow Flight calls still running after %.0f s; exiting anyway", timeout)

    @property
    def port(self) -> int | None:
        """The Flight listener's port once it is listening, else None."""
        return int(self.server.port) if self.server is not None else None

    def find_elsewhere(self, key: Key) -> StoredTable | None:
        """Move the table under ``key`` here from the member holding it (blocks; see
        :mod:`tabpy.arrow.owners`); None if no live member has it."""
        return self.owners.fetch(key, self.peers())

    @property
    def stopped(self) -> bool:
        return self.server is None or self._stopped.is_set()

    def close(self) -> None:
        """Free every stored table (after ``stop``)."""
        self._closed.set()
        self.store.clear()
        kept, self._kept_spare = self._kept_spare, None
        if kept is not None:
            kept[1].close()

    def _stop_in_background(self) -> None:
        with self._stop_lock:
            if self._stopping or self.server is None:
                return
            self._stopping = True
        # gRPC's shutdown waits for the calls in flight, including the one asking for it.
        threading.Thread(target=self._stop_listener, name="tabpy-arrow-stop", daemon=True).start()

    def _stop_listener(self) -> None:
        assert self.server is not None
        try:
            self.server.shutdown()
            logger.info("Arrow Flight stopped")
        finally:
            self._stopped.set()

    def refuse_call(self, principal: Principal, call: str) -> PermissionDenied | None:
        """Why ``principal`` may not make ``call`` (``DoPut``, ``action:clear``), or None."""
        role = flight_role(call)
        return self.authorization.role_refusal(principal, role) if role is not None else None

    def refuse_shutdown(self, principal: Principal) -> str | None:
        """Why ``principal`` may not stop the Flight listener, or None; audited either way."""
        refusal = self._shutdown_refusal(principal)
        self._audit_shutdown(principal, refusal)
        return refusal

    def _shutdown_refusal(self, principal: Principal) -> str | None:
        # TABPY_ARROW_ADMIN_USERS: the only list with TABPY_AUTHZ off (as before roles), an
        # alias of the admin role with it on.
        admins = self.settings.arrow_admin_users
        listed = {name.lower() for name in admins} if principal.scheme == "basic" else set(admins)
        if principal.scheme == "none":
            return (
                "shutdown needs an authenticated administrator, and this server has no "
                "authentication: set TABPY_PWD_FILE (or OAuth) and list the administrator in "
                "TABPY_ARROW_ADMIN_USERS. To stop the whole server, send it SIGTERM."
            )
        if principal.user is not None and principal.user in listed:
            return None
        authorization = self.authorization
        if authorization.enabled:
            if authorization.has_role(principal, "admin"):
                return None
            held = ", ".join(sorted(principal.roles)) or "no role"
            return (
                "Permission denied: shutting down Arrow Flight needs the admin role; "
                f"{audit_name(principal)} has {held}. An admin can grant it with tabpy-user "
                "grant --config <config file> -u <name> --role admin."
            )
        return (
            f"user {principal.user!r} may not shut down Arrow Flight: only the users listed "
            "in TABPY_ARROW_ADMIN_USERS may."
        )

    def _audit_shutdown(self, principal: Principal, refusal: str | None) -> None:
        if self.registry is None:
            return
        actor = Actor(audit_name(principal), client="arrow-flight")
        try:
            self.registry.record(
                actor, "shutdown", "refused" if refusal else "allowed", detail=refusal
            )
        except Exception as exc:  # noqa: BLE001 - the decision stands; the log keeps the trace
            logger.error("Could not audit an Arrow Flight shutdown by %s: %s", actor.principal, exc)

    def _sweep(self) -> None:
        interval = min(_SWEEP_SECONDS, max(self.store.ttl / 4, 0.05))
        while not self._closed.wait(interval):
            self.store.expire()

    # --- /evaluate ----------------------------------------------------------------------------

    async def evaluate_table(
        self, request: TableRequest, may_query: QueryCheck | None = None, principal: str = ""
    ) -> bytes:
        """Run a ``dataPath`` request; the answer's bytes (``null`` or the new table's path).

        ``may_query``: what the script may ``tabpy.query``, its caller's rights; ``principal``:
        who the caller is, so that the pool runs the script on a worker of theirs.
        """
        key = path_key(request.data_path)
        table = self.store.take(key)
        if table is None and await asyncio.to_thread(self.find_elsewhere, key) is not None:
            table = self.store.take(key)
        if table is None:
            raise TableNotFound(request.data_path, f"{self.store.ttl:g}")
        spare = self._spare(principal)  # for a large result, if it cannot go over the input
        written: Segment | None = None
        try:
            source = table.segment
            params = {
                "script": request.script,
                "input": None if source is None else source.path,  # None: the job's body
                "output": spare.path,
                "available": self.store.available,
                "limit": self.store.max_bytes,
            }
            # The channel writes any bytes-like object; a table in memory goes without a copy.
            body = [cast(bytes, memoryview(table.data))] if source is None else []
            job = Job(
                ExtensionMeta(TABLE_JOB, params), body, principal=principal, may_query=may_query
            )
            reply = await self.pool.submit(job)
            if reply.body == b"null":  # the script returned None: no table
                return b"null"
            # What the worker wrote: a JSON line, then the table itself if it is small.
            end = reply.body.find(b"\n")
            view = memoryview(reply.body)
            result = orjson.loads(view if end < 0 else view[:end])
            output_path = str(uuid.uuid4())
            output = path_key(output_path)
            if result.get("inline"):
                self._adopt_data(pa.py_buffer(view[end + 1 :]), output, result["rows"])
            else:
                if result["in_input"]:  # the worker wrote over the input (tabpy.arrow.worker)
                    assert source is not None
                    written, table.segment = source, spare
                    self.store.adjust(-table.size)  # counted again by _adopt, at its size
                    table.size = 0
                else:
                    written = spare
                self._adopt(written, output, result["rows"])
        finally:
            self.store.discard(table)  # the input, or the spare if the input holds the result
            if written is None:
                self._keep_spare(principal, spare)
        logger.info("outputDataPath=%s", output_path)
        return json.dumps({"outputDataPath": output_path}).encode("ascii")

    def _spare(self, principal: str) -> Segment:
        """An empty segment for a result: the one kept, if its caller's (only they have been
        told its path), else a new one."""
        kept = self._kept_spare
        if kept is not None and kept[0] == principal:
            self._kept_spare = None
            return kept[1]
        return Segment()

    def _keep_spare(self, principal: str, spare: Segment) -> None:
        """Keep an unused result segment for the caller's next request (event loop only)."""
        if self._kept_spare is None and spare.fd >= 0 and spare.size() == 0:
            self._kept_spare = (principal, spare)
        else:
            spare.close()

    def _adopt(self, segment: Segment, key: Key, rows: int) -> None:
        """Store a worker's result; the segment is the store's (or closed) from here on."""
        size = segment.size()
        try:
            self.store.reserve(size)
        except StoreFull as full:
            segment.close()
            raise ExecutionFailed(f"StoreFull : {full}") from None
        try:
            schema = schema_of(segment)
        except BaseException:
            segment.close()
            self.store.adjust(-size)
            raise
        self.store.add(StoredTable(key, segment, size, rows, schema))

    def _adopt_data(self, data: pa.Buffer, key: Key, rows: int) -> None:
        """Store a small result the worker sent back in its reply."""
        try:
            self.store.reserve(data.size)
        except StoreFull as full:
            raise ExecutionFailed(f"StoreFull : {full}") from None
        try:
            schema = pa.ipc.open_stream(data).schema
        except BaseException:
            self.store.adjust(-data.size)
            raise
        self.store.add(StoredTable(key, None, data.size, rows, schema, data=data))


def _tls_certificates(settings: Settings) -> list[tuple[bytes, bytes]] | None:
    """The HTTPS certificate and key for ``grpc+tls`` (``tabpy.security.tls`` checked them)."""
    if settings.transfer_protocol != "https":
        return None
    assert settings.certificate_file is not None and settings.key_file is not None
    return [(settings.certificate_file.read_bytes(), settings.key_file.read_bytes())]
