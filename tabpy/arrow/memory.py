"""Giving memory back to the system after tables have passed through a process.

Allocators keep freed memory for reuse. After a table has been received, converted or sent,
that would leave a table's worth of memory in the server and in every worker that ever ran a
Prep script, so each of them returns it, but only once Arrow work has paused for a moment
(:class:`IdleRelease`): Tableau Prep sends its tables one after the other, and memory returned
between two of them would be faulted in again, page by page, by the next one (about a quarter
of a 1M-row round trip).
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Any

import pyarrow as pa

__all__ = ["RELEASE_AFTER_SECONDS", "IdleRelease", "release_memory"]

#: How long Arrow work must pause before a process hands its spare memory back.
RELEASE_AFTER_SECONDS = 2.0


def _find_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; other C libraries have no such call
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


def release_memory() -> None:
    pa.default_memory_pool().release_unused()
    if _malloc_trim is not None:
        _malloc_trim(0)


class IdleRelease:
    """Calls ``release`` once no work has been reported for ``after`` seconds.

    One daemon thread, started by the first :meth:`used`, sleeps until then; work reported
    meanwhile postpones the release rather than starting anything.
    """

    def __init__(self, after: float = RELEASE_AFTER_SECONDS, release: Any = release_memory):
        self.after = after
        self._release = release
        self._last_used = 0.0
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: How many releases have run (for tests and the curious).
        self.releases = 0

    def used(self) -> None:
        """Arrow work has just finished: release its memory if nothing follows soon."""
        self._last_used = time.monotonic()
        self._pending.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="tabpy-arrow-release", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self._pending.wait()
            idle = time.monotonic() - self._last_used
            if idle < self.after:
                time.sleep(self.after - idle)
                continue
            self._pending.clear()
            if time.monotonic() - self._last_used < self.after:  # used meanwhile
                self._pending.set()
                continue
            self._release()
            self.releases += 1
