"""The Arrow Flight server: TabPy 2.16's RPCs and actions over the bounded store.

* ``DoPut(descriptor)`` stores the uploaded table under the descriptor, replacing any table
  already there. A small table is kept in memory; a larger one's batches go straight into a
  shared-memory segment as they arrive.
* ``GetFlightInfo(descriptor)`` describes a stored table: schema, rows, bytes and one endpoint
  whose ticket redeems it. ``ListFlights`` describes them all.
* ``DoGet(ticket)`` streams the table and removes it: each table can be fetched once.

A table ``DoGet`` or ``GetFlightInfo`` asks for that another member of the fleet holds is first
moved here from it (``find_elsewhere``, :mod:`tabpy.arrow.owners`).
* Actions: ``getUniquePath`` (a new UUID to put a table under), ``clear`` (drop every stored
  table), ``healthcheck`` (no result) and ``shutdown`` (stop the Flight listener; HTTP keeps
  running). Unlike TabPy, ``shutdown`` is refused unless the caller is an admin (see
  :meth:`tabpy.arrow.service.ArrowService.refuse_shutdown`).

Every call first passes ``may_call``: with ``TABPY_AUTHZ`` on, the caller needs the role
:data:`tabpy.security.roles.FLIGHT_ROLES` names for it, as HTTP routes need theirs.

Keys and tickets follow TabPy: a table's key is ``(descriptor type, command, path)`` and its
ticket is that key's Python ``repr``, e.g. ``(1, None, (b'<uuid>',))``.
"""

from __future__ import annotations

import ast
import logging
import mmap
import os
import uuid
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeGuard

import pyarrow as pa
import pyarrow.flight as flight

from tabpy.arrow.arrow_errors import FlightNotFound, ShutdownRefused, UnknownAction
from tabpy.arrow.credentials import CallerMiddleware, FlightAuthentication
from tabpy.arrow.flight_errors import flight_errors
from tabpy.arrow.memory import IdleRelease, release_memory
from tabpy.arrow.segments import Segment, SegmentReserve
from tabpy.arrow.store import StoredTable, TableStore
from tabpy.errors import TabPyError
from tabpy.security.principal import Principal

__all__ = [
    "ACTIONS",
    "LOCAL",
    "FlightService",
    "Key",
    "key_of",
    "path_key",
    "schema_of",
    "serialise",
    "ticket_of",
]

logger = logging.getLogger(__name__)

ACTIONS = (
    ("getUniquePath", "Return a new unique path to put a table under."),
    ("clear", "Remove every stored table."),
    ("healthcheck", "Answer if the Flight server is up."),
    ("shutdown", "Stop this Flight server (administrators only; HTTP keeps running)."),
)
_MAX_TICKET = 4096
#: Prefix of the tickets members send each other (:mod:`tabpy.arrow.owners`): "look only in
#: your own store", so that an owner never asks its own peers in turn.
LOCAL = b"local:"

Key = tuple[int, bytes | None, tuple[bytes, ...]]


def key_of(descriptor: flight.FlightDescriptor) -> Key:
    return (descriptor.descriptor_type.value, descriptor.command, tuple(descriptor.path or ()))


def path_key(path: str) -> Key:
    """The key of ``FlightDescriptor.for_path(path)``, as ``/evaluate``'s dataPath names it."""
    return (flight.DescriptorType.PATH.value, None, (path.encode("utf-8"),))


def ticket_of(key: Hashable) -> bytes:
    return repr(key).encode("utf-8")


def _key_of_ticket(ticket: bytes) -> Hashable | None:
    if len(ticket) > _MAX_TICKET:
        return None
    try:
        key = ast.literal_eval(ticket.decode("utf-8"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        return None
    try:
        hash(key)
    except TypeError:
        return None
    return key  # type: ignore[no-any-return]


def _is_key(key: Any) -> TypeGuard[Key]:
    """True if ``key`` has the shape of a table's key (a ticket may hold any literal)."""
    return (
        isinstance(key, tuple)
        and len(key) == 3
        and isinstance(key[0], int)
        and (key[1] is None or isinstance(key[1], bytes))
        and isinstance(key[2], tuple)
        and all(isinstance(part, bytes) for part in key[2])
    )


def _descriptor_of(key: Any) -> flight.FlightDescriptor:
    kind, command, path = key
    if command is not None:
        return flight.FlightDescriptor.for_command(command)
    return flight.FlightDescriptor.for_path(*path)


class FlightService(flight.FlightServerBase):
    def __init__(
        self,
        location: str,
        store: TableStore,
        authentication: FlightAuthentication,
        *,
        tls_certificates: list[tuple[bytes, bytes]] | None,
        may_shut_down: Callable[[Principal], str | None],
        on_shutdown: Callable[[], None],
        may_call: Callable[[Principal, str], TabPyError | None] = lambda principal, call: None,
        find_elsewhere: Callable[[Key], StoredTable | None] = lambda key: None,
    ) -> None:
        """``may_shut_down(principal)`` returns why the caller may not shut down, or None;
        ``may_call(principal, call)`` why it may not make a call (``DoPut``,
        ``action:clear``), or None; ``find_elsewhere(key)`` moves a table this instance
        lacks here from another member of the fleet and returns it (None: nobody has it)."""
        super().__init__(
            location,
            auth_handler=_Handshake(),
            tls_certificates=tls_certificates,
            middleware={"auth": authentication},
        )
        self.store = store
        self.advertised = flight.Location(location.rsplit(":", 1)[0] + f":{self.port}")
        self.may_shut_down = may_shut_down
        self.on_shutdown = on_shutdown
        self.may_call = may_call
        self.find_elsewhere = find_elsewhere
        #: The last fetched table's segment, kept for the next upload.
        self.reserve = SegmentReserve(store.max_bytes)
        #: gRPC's buffers, and the kept segment, go back to the system once Flight calls pause.
        self.idle_release = IdleRelease(release=self._release_memory)

    # --- RPCs ------------------------------------------------------------------------------------

    def list_flights(self, context: Any, criteria: bytes) -> Iterator[flight.FlightInfo]:
        with flight_errors():
            self._allow(context, "ListFlights")
        for table in self.store.tables():
            yield self._info(table)

    def get_flight_info(
        self, context: Any, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        with flight_errors():
            self._allow(context, "GetFlightInfo")
            key = key_of(descriptor)
            table = self.store.get(key) or self.find_elsewhere(key)  # moved here if elsewhere
            if table is None:
                raise FlightNotFound(key)
            return self._info(table)

    def do_put(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        key = key_of(descriptor)
        with flight_errors():
            self._allow(context, "DoPut")
        try:
            with flight_errors():
                table = receive(reader, self.store, key, self.reserve)
        except flight.FlightServerError as full:
            logger.warning("Arrow Flight: refused a table for %r: %s", key, full)
            raise
        finally:
            self.idle_release.used()  # gRPC's receive buffers: the table is in its segment now
        logger.debug("Arrow Flight: stored %d rows (%d bytes) as %r", table.rows, table.size, key)

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.FlightDataStream:
        with flight_errors():
            self._allow(context, "DoGet")
            raw = ticket.ticket
            # An internal ticket (another member fetching): this store only, never the peers.
            local = raw.startswith(LOCAL)
            key = _key_of_ticket(raw[len(LOCAL) :] if local else raw)
            table = self.store.take(key) if key is not None else None
            if table is None and not local and _is_key(key) and self.find_elsewhere(key):
                table = self.store.take(key)
            if table is None:
                raise FlightNotFound(key)
            if table.data is not None:  # in memory: streamed from it, gone from the store
                data, table.data = table.data, None
                self.store.discard(table)
                return flight.RecordBatchStream(pa.ipc.open_stream(data))
            return flight.GeneratorStream(
                table.schema, _stream(self.store, table, self.reserve, self.idle_release)
            )

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        with flight_errors():
            self._allow(context, "ListActions")
        return list(ACTIONS)

    def do_action(self, context: Any, action: flight.Action) -> Iterator[bytes]:
        with flight_errors():
            if action.type != "shutdown":  # its own rule: refuse_shutdown
                self._allow(context, f"action:{action.type}")
            yield from self._act(context, action)

    def _act(self, context: Any, action: flight.Action) -> Iterator[bytes]:
        kind = action.type
        if kind == "getUniquePath":
            yield str(uuid.uuid4()).encode("ascii")
        elif kind == "clear":
            count = self.store.clear()
            logger.info("Arrow Flight: cleared %d stored table(s)", count)
        elif kind == "healthcheck":
            return
        elif kind == "shutdown":
            caller: CallerMiddleware = context.get_middleware("auth")
            refusal = self.may_shut_down(caller.caller.principal)
            if refusal is not None:
                logger.warning("Arrow Flight: shutdown refused: %s", refusal)
                raise ShutdownRefused(refusal)
            logger.info("Arrow Flight: shutdown requested by %s", caller.caller.principal.user)
            self.store.clear()
            yield b"Shutdown!"
            self.on_shutdown()
        else:
            raise UnknownAction(kind, (name for name, _ in ACTIONS))

    # --- helpers ---------------------------------------------------------------------------------

    def _release_memory(self) -> None:
        self.reserve.drop()
        release_memory()

    def _allow(self, context: Any, call: str) -> None:
        """Raise the refusal of ``call`` for this call's caller, if there is one."""
        caller: CallerMiddleware = context.get_middleware("auth")
        refusal = self.may_call(caller.caller.principal, call)
        if refusal is not None:
            logger.warning("Arrow Flight: %s refused: %s", call, refusal.message)
            raise refusal

    def _info(self, table: StoredTable) -> flight.FlightInfo:
        endpoint = flight.FlightEndpoint(ticket_of(table.key), [self.advertised])
        return flight.FlightInfo(
            table.schema, _descriptor_of(table.key), [endpoint], table.rows, table.size
        )


#: Uploads up to this size are gathered and kept in memory (``StoredTable.data``): a segment
#: costs more than such a table, from memfd to file writes, and a worker gets it with its job
#: instead of mapping it. Larger ones stream into a segment batch by batch, so the server never
#: holds more than this besides the segment.
GATHER_BYTES = 1024 * 1024


def receive(
    reader: flight.MetadataRecordBatchReader,
    store: TableStore,
    key: Key,
    reserve: SegmentReserve | None = None,
) -> StoredTable:
    """Store an upload, counting its bytes as they arrive.

    A small upload is kept in memory; a larger one is written into a segment, over
    ``reserve``'s kept one if it has one ready.
    """
    counted = rows = 0
    held: list[pa.RecordBatch] = []
    segment: Segment | None = None
    try:
        batches = _batches(reader)
        for batch in batches:
            store.reserve(batch.nbytes)  # refuses the batch that crosses the limit
            counted += batch.nbytes
            rows += batch.num_rows
            held.append(batch)
            if counted > GATHER_BYTES:
                break
        else:  # all of it is here: kept in memory
            data = serialise(reader.schema, held)
            store.adjust(data.size - counted)
            counted = data.size
            table = StoredTable(key, None, data.size, rows, reader.schema, data=data)
            store.add(table)
            return table
        segment = reserve.take() if reserve is not None else Segment()
        # Over the reserved pages (no truncation), then cut to the bytes written.
        with open(segment.path, "r+b", buffering=0) as file:
            sink = pa.PythonFile(file, mode="w")
            with pa.ipc.new_stream(sink, reader.schema) as out:
                for batch in held:
                    out.write_batch(batch)
                del held[:]
                for batch in batches:
                    store.reserve(batch.nbytes)
                    counted += batch.nbytes
                    out.write_batch(batch)
                    rows += batch.num_rows
                    written = file.tell()
                    store.adjust(written - counted)
                    counted = written
            size = file.tell()
            file.truncate(size)
        store.adjust(size - counted)
        counted = size
    except BaseException:
        store.adjust(-counted)
        if segment is not None:
            segment.close()
        raise
    table = StoredTable(key, segment, size, rows, reader.schema)
    store.add(table)
    return table


def _batches(reader: flight.MetadataRecordBatchReader) -> Iterator[pa.RecordBatch]:
    for chunk in reader:
        if chunk.data is not None:  # metadata-only messages carry no rows
            yield chunk.data


def serialise(schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.Buffer:
    """``batches`` as one IPC stream in memory."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as out:
        for batch in batches:
            out.write_batch(batch)
    return sink.getvalue()


#: Smaller segments are freed, not kept: checking that nothing maps them would cost more.
RECYCLE_MIN_BYTES = 1024 * 1024


def _stream(
    store: TableStore,
    table: StoredTable,
    reserve: SegmentReserve | None = None,
    idle_release: IdleRelease | None = None,
) -> Iterator[pa.RecordBatchReader]:
    """Hand gRPC a zero-copy reader over the segment; once it is done, keep the segment for
    the next upload (``reserve``) if nothing maps it any more, else free it."""
    segment = table.segment
    assert segment is not None  # tables in memory are streamed from it (do_get)
    mapping = _map(segment)
    try:
        yield pa.ipc.open_stream(pa.py_buffer(mapping))
    finally:
        if (
            reserve is not None
            and table.size >= RECYCLE_MIN_BYTES
            and _unmap(mapping)
            and reserve.give(segment)
        ):
            store.adjust(-table.size)
            if idle_release is not None:
                idle_release.used()  # the kept segment goes when Flight calls pause
        else:
            store.discard(table)


def _read(segment: Segment, size: int, offset: int = 0) -> bytes:
    parts = []
    while size > 0:
        part = os.pread(segment.fd, size, offset)
        if not part:
            raise OSError(f"{segment!r} ends before the {size} bytes expected")
        parts.append(part)
        size -= len(part)
        offset += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


#: The IPC stream's first bytes: a continuation marker, then the schema message's length.
_CONTINUATION = b"\xff\xff\xff\xff"


def schema_of(segment: Segment) -> pa.Schema:
    """The schema of the IPC stream in ``segment``, read from its first message alone."""
    head = _read(segment, 8)
    if head[:4] != _CONTINUATION:  # not how pyarrow writes streams: let Arrow read it
        with pa.memory_map(segment.path) as source:
            return pa.ipc.open_stream(source).schema
    length = int.from_bytes(head[4:], "little")
    return pa.ipc.read_schema(pa.py_buffer(_read(segment, 8 + length)))


def _map(segment: Segment) -> mmap.mmap:
    return mmap.mmap(segment.fd, segment.size(), flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)


def _unmap(mapping: mmap.mmap) -> bool:
    """Unmap unless buffers still point into the mapping (gRPC still sending); whether it was."""
    try:
        mapping.close()
    except BufferError:  # the mapping goes with the last buffer
        return False
    return True


class _Handshake(flight.ServerAuthHandler):
    """Lets ``Handshake`` succeed; the middleware does the real checking on every call.

    Clients such as ``FlightClient.authenticate_basic_token`` log in with a Handshake carrying
    ``authorization: Basic ...`` and read the session token from its response headers.
    """

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        pass

    def is_valid(self, token: bytes) -> bytes:
        return b""
