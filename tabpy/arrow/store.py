"""The Flight store: Arrow tables as IPC streams, bounded in bytes, with expiry.

A table lives in a shared-memory segment that workers map, or, up to a megabyte, in this
process's memory (:attr:`StoredTable.data`): a small table is cheaper to send to a worker with
its job than to put in a segment for the worker to open and map, and the worker sends a small
result back the same way.

Every byte of every open segment counts against the limit (``TABPY_ARROW_MAX_STORE_MB``): the
tables waiting to be fetched, the one a ``DoPut`` is still writing (reserved batch by batch, so
an upload over the limit stops at the batch that crosses it), and a table that ``DoGet`` or
``/evaluate`` has taken out but is still reading. A table nobody fetches within
``TABPY_ARROW_ENTRY_TTL_SECONDS`` of being stored is dropped.

Thread-safe: Flight calls run on gRPC threads, ``/evaluate`` on the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from tabpy.arrow.arrow_errors import StoreFull
from tabpy.arrow.segments import Segment

__all__ = ["StoredTable", "TableStore"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class StoredTable:
    key: Hashable
    #: Where the IPC stream is: a segment, or None when it is ``data``.
    segment: Segment | None
    size: int  # bytes of the IPC stream
    rows: int
    schema: Any  # pyarrow.Schema
    stored_at: float = field(default=0.0)
    #: A small table's IPC stream, held in memory (a ``pyarrow.Buffer``), when not in a segment.
    data: Any = None


class TableStore:
    def __init__(
        self, max_bytes: int, ttl: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._tables: dict[Hashable, StoredTable] = {}
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Bytes held: stored tables, uploads in progress and tables being read."""
        return self._used

    @property
    def available(self) -> int:
        return max(self.max_bytes - self._used, 0)

    # --- accounting ------------------------------------------------------------------------------

    def reserve(self, nbytes: int) -> None:
        """Count ``nbytes`` more, or raise ``StoreFull`` if they do not fit."""
        with self._lock:
            if self._used + nbytes > self.max_bytes:
                raise StoreFull(nbytes, self.max_bytes - self._used, self.max_bytes)
            self._used += nbytes

    def adjust(self, delta: int) -> None:
        """Correct an estimate once the real size is known (never refused)."""
        with self._lock:
            self._used += delta

    def discard(self, table: StoredTable) -> None:
        """Free a table that is no longer stored: its memory and its bytes."""
        if table.segment is not None:
            table.segment.close()
        table.data = None
        self.adjust(-table.size)

    # --- tables ----------------------------------------------------------------------------------

    def add(self, table: StoredTable) -> None:
        """Store ``table`` (its size already counted), replacing any table under the same key."""
        table.stored_at = self._clock()
        with self._lock:
            replaced = self._tables.pop(table.key, None)
            self._tables[table.key] = table
        if replaced is not None:
            self.discard(replaced)

    def get(self, key: Hashable) -> StoredTable | None:
        self.expire()
        with self._lock:
            return self._tables.get(key)

    def take(self, key: Hashable) -> StoredTable | None:
        """Remove and return a table; the caller discards it once done reading."""
        self.expire()
        with self._lock:
            return self._tables.pop(key, None)

    def tables(self) -> list[StoredTable]:
        self.expire()
        with self._lock:
            return list(self._tables.values())

    def clear(self) -> int:
        with self._lock:
            removed = list(self._tables.values())
            self._tables.clear()
        for table in removed:
            self.discard(table)
        return len(removed)

    def expire(self) -> int:
        """Drop the tables stored longer than the time to live; return how many."""
        deadline = self._clock() - self.ttl
        with self._lock:
            expired = [table for table in self._tables.values() if table.stored_at <= deadline]
            for table in expired:
                del self._tables[table.key]
        for table in expired:
            self.discard(table)
        if expired:
            logger.info(
                "Arrow Flight: dropped %d table(s) nobody fetched within %g s "
                "(TABPY_ARROW_ENTRY_TTL_SECONDS)",
                len(expired),
                self.ttl,
            )
        return len(expired)

    def __len__(self) -> int:
        return len(self._tables)
