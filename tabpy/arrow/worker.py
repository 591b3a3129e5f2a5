"""Running a Tableau Prep script in a worker: the table comes and goes with the job, or in
shared memory.

The worker side of Arrow's table jobs, plugged into the worker through :data:`JOB_HANDLERS`
(``tabpy.runtime.job_handlers``) and imported only when the first such job arrives.

A small input table (:data:`tabpy.arrow.flight.GATHER_BYTES`) comes as the job's body, and a
small result goes back in the reply's body after a line that describes it: no shared memory
to open, map or write for a table that costs less to send. Otherwise the job names two
segments (:mod:`tabpy.arrow.segments`): the stored input table and an empty one for the
result. The input is mapped, not read: Arrow reads the IPC stream in place and only the
conversion to the pandas DataFrame passed as ``_arg1`` copies it. A large result is written as
an Arrow IPC stream, and the reply's body describes it (rows, bytes, and which segment holds
it); the server stores that segment. A script that returns None gets ``null``.

A large result goes over the input when the DataFrame no longer maps it (the usual case: a
table put in several batches is copied by the conversion): its memory pages are already there,
so writing costs a copy and no page allocation, and no second table-sized segment is needed.
Otherwise (some columns are zero-copy views of the mapping) the input is left alone and the
result goes to the empty segment. Whether anything still maps the input is known from the
mapping itself: Python refuses to close a ``mmap`` that buffers still point into.

The memory a job's DataFrames took is handed back once table jobs pause
(:class:`tabpy.arrow.memory.IdleRelease`), not after every job: the next table of a Prep flow
reuses it instead of faulting fresh pages in. Importing this module switches the worker's
Arrow allocations to the C library's allocator, which that release can empty from its own
thread.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import orjson
import pyarrow as pa

from tabpy.arrow import TABLE_JOB
from tabpy.arrow.arrow_errors import StoreFull
from tabpy.arrow.memory import IdleRelease
from tabpy.runtime.evaluate import script_failure
from tabpy.runtime.job_handlers import JobContext, JobHandler
from tabpy.runtime.protocol import Reply
from tabpy.runtime.scripts import run_script

__all__ = ["JOB_HANDLERS", "handle_evaluate_table", "inline_result"]

#: Size of the record batches a result is cut into: DoGet sends one gRPC message per batch,
#: and a few megabytes each stream faster than one huge message.
BATCH_BYTES = 4 * 1024 * 1024
#: Results up to this size go back in the reply; larger ones into a segment.
INLINE_RESULT_BYTES = 1024 * 1024
#: Tables smaller than this convert to pandas on the worker's thread alone. Arrow's threads
#: are already running, but handing them the columns and waiting for them costs more than the
#: conversion of a small table (a 1,000-row table converts three times faster without them).
THREADED_TO_PANDAS_BYTES = 2 * 1024 * 1024
#: DataFrames with fewer cells than this convert back to Arrow on the worker's thread alone.
#: pyarrow starts a new thread pool for every threaded conversion, which costs more than the
#: whole conversion of a DataFrame of up to a few hundred thousand rows.
THREADED_FROM_PANDAS_CELLS = 2_000_000

#: This worker's spare memory goes back to the system once table jobs pause.
_IDLE_RELEASE = IdleRelease()
# That release runs on a thread of its own, and mimalloc (Arrow's default allocator here) only
# returns the memory of the thread that asks; the C library's allocator returns all of it.
pa.set_memory_pool(pa.system_memory_pool())


def handle_evaluate_table(
    params: dict[str, Any], context: JobContext, body: bytearray | memoryview
) -> Reply:
    """``params``: see ``evaluate_table`` in :mod:`tabpy.arrow.service`; ``body``: the input
    table's IPC stream when ``params["input"]`` is None."""
    try:
        return _evaluate_table(params, context, body)
    finally:
        _IDLE_RELEASE.used()  # the job's DataFrames are gone


JOB_HANDLERS: dict[str, JobHandler] = {TABLE_JOB: handle_evaluate_table}


def _evaluate_table(
    job: dict[str, Any], context: JobContext, body: bytearray | memoryview
) -> Reply:
    try:
        if job["input"] is None:  # sent with the job
            frame = _frame_of(body)
            reuse_input = False
        else:
            frame, mapping = map_frame(job["input"])
            # Whether the DataFrame still maps the input decides where the result may go.
            reuse_input = unmap(mapping)
        context.tabpy.forget_failed_query()
        result = run_script(job["script"], {"_arg1": frame}, context.namespace, context.tabpy)
        del frame
        if result is None:
            return Reply.ok(b"null")
        table = as_table(result)
        del result
        if table.nbytes <= INLINE_RESULT_BYTES:
            return inline_result(table, job["available"], job["limit"])
        target = job["input"] if reuse_input else job["output"]
        size = write_table(table, target, job["available"], job["limit"])
    except MemoryError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit must not end the worker
        return script_failure(exc, context.tabpy)
    written = {"rows": table.num_rows, "bytes": size, "in_input": reuse_input}
    return Reply.ok(orjson.dumps(written))


def inline_result(table: pa.Table, available: int, limit: int) -> Reply:
    """The reply carrying a small result: a JSON line describing it, then its IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table, max_chunksize=_rows_per_batch(table))
    data = sink.getvalue()
    _check_space(data.size, available, limit)
    head = orjson.dumps({"rows": table.num_rows, "bytes": data.size, "inline": True})
    return Reply.ok(b"".join((head, b"\n", memoryview(data))))


def map_frame(path: str) -> tuple[Any, mmap.mmap]:
    """The table in segment ``path`` as a pandas DataFrame, and the mapping it was read from.

    Some columns (strings, numbers sent in a single batch) may stay zero-copy views of the
    mapping, which then lives as long as they do (see :func:`unmap`).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        # All pages at once (MAP_POPULATE) rather than one fault per page as Arrow reads.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mapping = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ) if size else None
    finally:
        os.close(fd)
    if mapping is None:
        raise ValueError("the stored table is empty")
    frame = _frame_of(mapping)
    return frame, mapping


def _frame_of(stream: mmap.mmap | bytearray | memoryview) -> Any:
    # A function of its own: the reader and its buffers are gone once it returns.
    table = pa.ipc.open_stream(pa.py_buffer(stream)).read_all()
    return table.to_pandas(use_threads=table.nbytes >= THREADED_TO_PANDAS_BYTES)


def unmap(mapping: mmap.mmap) -> bool:
    """Unmap ``mapping`` unless columns still point into it; whether it was unmapped."""
    try:
        mapping.close()
    except BufferError:  # zero-copy columns: the mapping goes when they do
        return False
    return True


def read_frame(path: str) -> Any:
    """The table in segment ``path`` as a pandas DataFrame (the mapping lives as long as any
    column that is a view of it)."""
    frame, mapping = map_frame(path)
    unmap(mapping)
    return frame


def as_table(result: Any) -> pa.Table:
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    if isinstance(result, dict):
        return pa.table(result)
    if hasattr(result, "columns") and hasattr(result, "to_dict"):  # a DataFrame
        shape = getattr(result, "shape", (0, 0))
        threaded = shape[0] * shape[1] >= THREADED_FROM_PANDAS_CELLS
        return pa.table(result, nthreads=None if threaded else 1)
    raise TypeError(
        "a script called with dataPath must return a table (a pandas DataFrame or a dict of "
        f"columns), or None for no output; it returned {type(result).__name__}"
    )


def write_table(table: pa.Table, path: str, available: int, limit: int) -> int:
    """Write ``table`` to segment ``path`` as an IPC stream of moderate batches; its size."""
    rows_per_batch = _rows_per_batch(table)
    measured = pa.MockOutputStream()
    with pa.ipc.new_stream(measured, table.schema) as stream:
        stream.write_table(table, max_chunksize=rows_per_batch)
    size = int(measured.size())
    _check_space(size, available, limit)
    # Overwrite, then cut: truncating first would free the pages this write can reuse.
    with open(path, "r+b", buffering=0) as file:
        sink = pa.PythonFile(file, mode="w")
        with pa.ipc.new_stream(sink, table.schema) as stream:
            stream.write_table(table, max_chunksize=rows_per_batch)
        file.truncate(size)
    return size


def _rows_per_batch(table: pa.Table) -> int:
    row_bytes = table.nbytes / table.num_rows if table.num_rows else 1
    return max(1024, int(BATCH_BYTES / max(row_bytes, 1)))


def _check_space(size: int, available: int, limit: int) -> None:
    if size > available:  # refused before it takes memory; the server checks again
        raise StoreFull(size, available, limit)
