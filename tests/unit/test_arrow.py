"""Arrow Flight logic without a server: settings, the store, session tokens, the worker side."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pandas
import pytest

from tabpy.config import ConfigError, load_settings
from tests.components import ARROW, require_module

pytestmark = pytest.mark.arrow
pa = require_module("pyarrow", ARROW)

from tabpy.arrow import worker  # noqa: E402
from tabpy.arrow.arrow_errors import StoreFull  # noqa: E402
from tabpy.arrow.flight import receive  # noqa: E402
from tabpy.arrow.memory import IdleRelease  # noqa: E402
from tabpy.arrow.segments import Segment, SegmentReserve, is_mapped  # noqa: E402
from tabpy.arrow.sessions import SessionTokens  # noqa: E402
from tabpy.arrow.store import StoredTable, TableStore  # noqa: E402
from tabpy.arrow.worker import (  # noqa: E402
    as_table,
    inline_result,
    map_frame,
    read_frame,
    unmap,
    write_table,
)

MB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- settings ------------------------------------------------------------------------------------


def test_arrow_settings(tmp_path: Path) -> None:
    settings = load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)})
    assert settings.arrow_bind_address == "0.0.0.0"
    assert settings.arrow_max_store_mb == 1024
    assert settings.arrow_entry_ttl_seconds == 600
    assert settings.arrow_admin_users == ()
    settings = load_settings(
        None,
        {
            "TABPY_STATE_PATH": str(tmp_path),
            "TABPY_BIND_ADDRESS": "127.0.0.1",
            "TABPY_ARROW_MAX_STORE_MB": "64",
            "TABPY_ARROW_ENTRY_TTL_SECONDS": "0.5",
            "TABPY_ARROW_ADMIN_USERS": "alice, ops@example.com",
        },
    )
    assert settings.arrow_bind_address == "127.0.0.1"  # follows the HTTP address by default
    assert settings.arrow_max_store_mb == 64
    assert settings.arrow_entry_ttl_seconds == 0.5
    assert settings.arrow_admin_users == ("alice", "ops@example.com")
    with pytest.raises(ConfigError, match="TABPY_ARROW_MAX_STORE_MB"):
        load_settings(None, {"TABPY_STATE_PATH": str(tmp_path), "TABPY_ARROW_MAX_STORE_MB": "0"})


# --- store ---------------------------------------------------------------------------------------


def stored(store: TableStore, key: str, size: int) -> StoredTable:
    store.reserve(size)
    table = StoredTable(key, Segment(), size, 1, None)
    store.add(table)
    return table


def test_store_counts_bytes_and_refuses_over_the_limit() -> None:
    store = TableStore(10 * MB, 60)
    stored(store, "a", 6 * MB)
    with pytest.raises(StoreFull) as refused:
        store.reserve(5 * MB)
    message = str(refused.value)
    assert "TABPY_ARROW_MAX_STORE_MB = 10 MB" in message
    assert "needs 5.0 MB more" in message and "only 4.0 MB" in message
    assert store.used == 6 * MB

    stored(store, "a", 3 * MB)  # replacing frees the old table
    assert store.used == 3 * MB and len(store) == 1
    taken = store.take("a")
    assert taken is not None and store.take("a") is None
    assert store.used == 3 * MB  # still being read
    store.discard(taken)
    assert store.used == 0 and taken.segment.fd == -1


def test_store_expires_unfetched_tables() -> None:
    clock = Clock()
    store = TableStore(10 * MB, 60, clock=clock)
    stored(store, "old", MB)
    clock.now += 30
    stored(store, "new", MB)
    clock.now += 31
    assert [table.key for table in store.tables()] == ["new"]
    assert store.get("old") is None and store.used == MB
    clock.now += 30
    assert store.expire() == 1 and store.used == 0
    stored(store, "x", MB)
    assert store.clear() == 1 and store.used == 0


# --- session tokens ------------------------------------------------------------------------------


def test_session_tokens_are_reused_rotated_and_bounded() -> None:
    clock = Clock()
    tokens = SessionTokens(clock=clock)
    stamps = {"bob": "hash-1"}
    first = tokens.issue("bob", "hash-1")
    assert len(first) == 43
    assert tokens.issue("bob", "hash-1") == first
    assert tokens.user_of(first, stamps.get) == "bob"

    clock.now += 3600 - 299  # fewer than 300 s left: a new token
    second = tokens.issue("bob", "hash-1")
    assert second != first and tokens.user_of(first, stamps.get) == "bob"
    clock.now += 3600 - 299
    third = tokens.issue("bob", "hash-1")
    assert tokens.user_of(first, stamps.get) is None  # at most two per user
    assert tokens.user_of(second, stamps.get) == "bob"
    clock.now += 300
    assert tokens.user_of(second, stamps.get) is None  # expired
    assert tokens.user_of("made-up", stamps.get) is None

    stamps["bob"] = "hash-2"  # the password changed
    assert tokens.user_of(third, stamps.get) is None
    del stamps["bob"]
    assert tokens.user_of(tokens.issue("bob", "hash-2"), stamps.get) is None  # user removed


def test_session_tokens_total_is_bounded() -> None:
    tokens = SessionTokens(max_tokens=3)
    issued = [tokens.issue(f"user{i}", "h") for i in range(5)]
    assert len(tokens) == 3
    assert tokens.user_of(issued[0], lambda user: "h") is None
    assert tokens.user_of(issued[4], lambda user: "h") == "user4"


# --- worker side ---------------------------------------------------------------------------------


def write(segment: Segment, table: pa.Table, batch_rows: int | None) -> None:
    with pa.OSFile(segment.path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table, max_chunksize=batch_rows)


def read(segment: Segment) -> pa.Table:
    with pa.memory_map(segment.path) as source:
        return pa.ipc.open_stream(source).read_all()


def test_frames_copied_out_of_a_segment_release_it() -> None:
    segment = Segment()
    write(segment, pa.table({"x": [1.0, 2.0, 3.0, 4.0]}), 2)
    frame = read_frame(segment.path)
    assert not is_mapped(segment.name)  # two batches: the DataFrame is a copy
    frame.loc[0, "x"] = 10.0  # and writable
    # The result may then go over the input, which shrinks to fit.
    size = write_table(pa.table({"y": [1]}), segment.path, 10 * MB, 10 * MB)
    assert segment.size() == size
    assert read(segment).column("y").to_pylist() == [1]
    segment.close()


def test_zero_copy_frames_keep_their_segment_mapped() -> None:
    segment = Segment()
    write(segment, pa.table({"s": ["a", "b"]}), None)
    frame = read_frame(segment.path)
    # Strings stay views of the mapping from pandas 3 on (Arrow-backed strings); before, they
    # are copied into Python objects and the mapping is released at once.
    assert is_mapped(segment.name) == (int(pandas.__version__.split(".")[0]) >= 3)
    del frame
    assert not is_mapped(segment.name)
    segment.close()


def test_results_must_be_tables_within_the_space_left() -> None:
    assert as_table({"a": [1, 2]}).num_rows == 2
    assert as_table(pa.RecordBatch.from_pydict({"a": [1]})).num_rows == 1
    with pytest.raises(TypeError, match="must return a table .* it returned list"):
        as_table([1, 2])
    segment = Segment()
    with pytest.raises(StoreFull, match="TABPY_ARROW_MAX_STORE_MB = 1 MB"):
        write_table(pa.table({"a": list(range(300_000))}), segment.path, MB // 2, MB)
    assert os.fstat(segment.fd).st_size == 0  # refused before writing
    segment.close()


def test_small_tables_convert_without_threads_to_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = pa.table({"x": [float(i) for i in range(3000)], "s": ["a", None, "c"] * 1000})
    segment = Segment()
    write(segment, table, 1000)
    alone = read_frame(segment.path)  # small: on the worker's thread
    monkeypatch.setattr(worker, "THREADED_TO_PANDAS_BYTES", 0)
    assert read_frame(segment.path).equals(alone)
    segment.close()

    alone_table = as_table(alone)
    assert alone_table.equals(pa.table(alone), check_metadata=True)  # what pyarrow picks
    monkeypatch.setattr(worker, "THREADED_FROM_PANDAS_CELLS", 0)
    assert as_table(alone).equals(alone_table, check_metadata=True)
    assert alone_table.schema.metadata is not None  # pandas' metadata kept, as TabPy keeps it


def test_a_copied_frame_lets_its_mapping_go_at_once() -> None:
    segment = Segment()
    write(segment, pa.table({"x": [1.0, 2.0, 3.0, 4.0]}), 2)
    frame, mapping = map_frame(segment.path)
    assert unmap(mapping)  # two batches: nothing points into the mapping any more
    assert not is_mapped(segment.name)
    assert frame["x"].tolist() == [1.0, 2.0, 3.0, 4.0]
    segment.close()


def test_a_view_keeps_its_mapping_until_it_goes() -> None:
    segment = Segment()
    write(segment, pa.table({"s": ["a", "b"]}), None)
    frame, mapping = map_frame(segment.path)
    views = int(pandas.__version__.split(".")[0]) >= 3  # Arrow-backed strings from pandas 3
    assert unmap(mapping) is not views
    assert is_mapped(segment.name) is views
    del frame, mapping
    assert not is_mapped(segment.name)
    segment.close()


# --- memory --------------------------------------------------------------------------------------


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_memory_is_released_once_work_pauses() -> None:
    released = threading.Event()
    idle = IdleRelease(after=0.3, release=released.set)
    start = time.monotonic()
    while time.monotonic() - start < 0.6:  # busy: each use postpones the release
        idle.used()
        assert not released.is_set()
        time.sleep(0.05)
    assert released.wait(5)
    assert idle.releases == 1
    time.sleep(0.5)
    assert idle.releases == 1  # nothing used since: nothing more to release
    released.clear()
    idle.used()
    assert released.wait(5)
    wait_until(lambda: idle.releases == 2)


def filled(nbytes: int) -> Segment:
    segment = Segment()
    os.posix_fallocate(segment.fd, 0, nbytes)
    return segment


def test_the_reserve_keeps_one_bounded_segment() -> None:
    reserve = SegmentReserve(max_bytes=MB)
    assert reserve.take().size() == 0  # nothing kept: a new empty segment
    kept = filled(64 * 1024)
    assert reserve.give(kept)
    assert reserve.reserved == 64 * 1024
    other = filled(1024)
    assert not reserve.give(other)  # one at a time: the caller frees the other
    too_big = filled(2 * MB)
    reserve.drop()
    assert not reserve.give(too_big)
    assert reserve.reserved == 0 and kept.fd == -1  # dropped means freed
    assert reserve.give(other)
    assert reserve.take() is other
    assert reserve.reserved == 0  # handed out once
    for segment in (other, too_big):
        segment.close()


class Upload:
    """What ``receive`` reads from: a schema and chunks carrying record batches."""

    def __init__(self, table: pa.Table, batch_rows: int) -> None:
        self.schema = table.schema
        self.batches = table.to_batches(max_chunksize=batch_rows)

    def __iter__(self):  # type: ignore[no-untyped-def]
        for batch in self.batches:
            yield type("Chunk", (), {"data": batch})()


def test_an_upload_goes_over_the_kept_pages_and_is_cut_to_size() -> None:
    store = TableStore(10 * MB, 60)
    reserve = SegmentReserve(max_bytes=10 * MB)
    old = pa.table({"z": [7.0] * 500_000})  # 4 MB that the new table must not show
    segment = Segment()
    write(segment, old, None)
    assert reserve.give(segment)
    table = pa.table({"x": list(range(150_000)), "y": [0.5] * 150_000})  # 2.4 MB, streamed
    stored_table = receive(Upload(table, 10_000), store, "k", reserve)  # type: ignore[arg-type]
    assert stored_table.segment is segment
    assert reserve.reserved == 0
    assert stored_table.size == segment.size() < 4 * MB
    assert store.used == stored_table.size
    assert read(segment) == table
    store.clear()


def test_a_small_upload_is_kept_in_memory_and_leaves_the_kept_pages() -> None:
    store = TableStore(10 * MB, 60)
    reserve = SegmentReserve(max_bytes=10 * MB)
    kept = filled(4 * MB)
    assert reserve.give(kept)
    table = pa.table({"x": list(range(10_000)), "y": [0.5] * 10_000})  # 160 kB, 10 batches
    stored_table = receive(Upload(table, 1000), store, "k", reserve)  # type: ignore[arg-type]
    assert stored_table.segment is None and reserve.reserved == 4 * MB
    assert (stored_table.rows, stored_table.schema) == (10_000, table.schema)
    assert store.used == stored_table.size == stored_table.data.size
    fetched = pa.ipc.open_stream(stored_table.data).read_all()
    assert fetched == table
    assert [batch.num_rows for batch in fetched.to_batches()] == [1000] * 10  # as sent
    store.clear()
    assert store.used == 0 and stored_table.data is None
    reserve.drop()


@pytest.mark.parametrize("batch_rows", [1000, 100_000])  # gathered, streamed
def test_an_upload_over_the_limit_gives_its_bytes_back(batch_rows: int) -> None:
    store = TableStore(MB, 60)
    table = pa.table({"x": [1.0] * 200_000})  # 1.6 MB
    with pytest.raises(StoreFull):
        receive(Upload(table, batch_rows), store, "k")  # type: ignore[arg-type]
    assert store.used == 0 and len(store) == 0


def test_the_schema_is_read_from_the_first_message() -> None:
    from tabpy.arrow.flight import schema_of

    table = pa.Table.from_pandas(pandas.DataFrame({"a": [1.5], "s": ["x"]}))
    segment = Segment()
    write(segment, table, None)
    assert schema_of(segment).equals(table.schema, check_metadata=True)
    assert table.schema.metadata  # pandas' metadata came along
    segment.close()


def test_a_small_result_goes_back_in_the_reply() -> None:
    table = pa.table({"x": list(range(5000)), "s": ["a", None] * 2500})
    reply = inline_result(table, MB, 10 * MB)
    head, _, data = bytes(reply.body).partition(b"\n")
    described = json.loads(head)
    assert described == {"rows": 5000, "bytes": len(data), "inline": True}
    assert pa.ipc.open_stream(data).read_all() == table
    with pytest.raises(StoreFull, match="TABPY_ARROW_MAX_STORE_MB = 10 MB"):
        inline_result(table, len(data) - 1, 10 * MB)  # checked before it is sent


def test_a_fetched_segment_is_kept_only_when_nothing_maps_it() -> None:
    from tabpy.arrow.flight import RECYCLE_MIN_BYTES, _stream

    big = pa.table({"x": [1.0] * (RECYCLE_MIN_BYTES // 8 + 1000)})
    for still_mapped in (False, True):
        store = TableStore(10 * MB, 60)
        reserve = SegmentReserve(max_bytes=10 * MB)
        segment = Segment()
        write(segment, big, None)
        store.reserve(segment.size())
        table = StoredTable("k", segment, segment.size(), big.num_rows, big.schema)
        stream = _stream(store, table, reserve)
        fetched = next(stream).read_all()  # what gRPC sends: views of the mapping
        assert fetched == big
        if not still_mapped:
            del fetched
        with pytest.raises(StopIteration):
            next(stream)
        assert store.used == 0
        assert (reserve.reserved > 0) is not still_mapped
        assert (segment.fd >= 0) is not still_mapped  # kept, or freed at once
        reserve.drop()


RELEASE_PROBE = """
import threading
import numpy as np
import pyarrow as pa
import tabpy.arrow.worker  # a worker's allocator, as a table job sets it up
from tabpy.arrow.memory import release_memory

def anonymous_mb():
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) // 1024

buffers = [pa.allocate_buffer(64 * 1024) for _ in range(3000)]
for buffer in buffers:
    np.frombuffer(buffer, dtype=np.uint8)[:] = 1  # touch every page
kept = buffers[::50]  # freed memory with holes, as a job leaves it
del buffers
before = anonymous_mb()
releaser = threading.Thread(target=release_memory)  # as IdleRelease runs it
releaser.start()
releaser.join()
print(before, anonymous_mb())
"""


def test_a_workers_table_memory_can_be_released_from_another_thread() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", RELEASE_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    before, after = (int(n) for n in done.stdout.split())
    assert before - after > 100, (before, after)  # of about 190 MB freed


def test_an_unused_result_segment_is_kept_for_its_callers_next_request(tmp_path: Path) -> None:
    from tabpy.arrow.service import ArrowService

    settings = load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)})
    service = ArrowService(settings, None, None)  # type: ignore[arg-type]
    spare = service._spare("basic:alice")
    service._keep_spare("basic:alice", spare)
    other = service._spare("basic:bob")
    assert other is not spare  # only its caller was told its path
    assert service._spare("basic:alice") is spare
    for segment in (spare, other):
        segment.close()
    written = service._spare("basic:alice")  # none kept: a new one
    os.write(written.fd, b"x")  # a segment a worker wrote into is never kept
    service._keep_spare("basic:alice", written)
    assert written.fd == -1 and service._spare("basic:alice") is not written
    service.close()
