"""A worker's heap: kept between jobs that follow each other, given back when the worker idles.

Why: by default glibc serves every allocation above a threshold (128 KiB, rising with use) with
a fresh ``mmap`` and unmaps it on free, and returns the top of the heap to the system as soon
as it is free. A large job allocates the same big buffers again and again (the lists and
arrays of a million values, the reply's JSON twice over), so every job faults in tens of
megabytes of new pages; on a virtual machine that costs several microseconds a page, about 40
ms of a million-row ``/evaluate``.

:meth:`Heap.keep_freed_memory` makes the worker's allocator keep what it frees (allocations
up to 32 MiB come from the heap, and up to a quarter of the worker's memory limit, at most 1 GiB,
of free memory stays at its top), so the next job reuses pages that are already there. So that
an idle worker does not hold the memory of its last large job, :meth:`Heap.wait_for_job` gives
it back (``malloc_trim``) when no job has come for a second.

Only glibc has these controls; elsewhere nothing changes. The worker's memory limit
(``RLIMIT_DATA``) still holds: the heap reuses what it kept before it grows, and what it may
keep is a quarter of the limit at most.
"""

from __future__ import annotations

import ctypes
import select
import socket
from typing import Any

__all__ = ["IDLE_TRIM_SECONDS", "Heap"]

#: A worker that has had no job for this long gives its free heap memory back.
IDLE_TRIM_SECONDS = 1.0
# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The largest allocation the heap serves (glibc's maximum on 64-bit systems).
_MMAP_THRESHOLD = 32 << 20
#: How much free memory the heap's top may keep while jobs come, at most.
_MAX_KEPT = 1 << 30


def _libc() -> Any:
    # The process's own symbols, libc's among them: ctypes.util.find_library would run and
    # parse ``ldconfig -p`` in every worker, dirtying about a megabyte of shared pages.
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None  # not glibc
    return libc


class Heap:
    """The worker's allocator controls (none where the C library is not glibc)."""

    def __init__(self) -> None:
        self._libc = _libc()
        #: Whether a job ran since the heap was last trimmed.
        self._used = False

    def keep_freed_memory(self, limit_mb: int) -> None:
        """Have the allocator keep what jobs free, for the next job (see the module);
        ``limit_mb`` is the worker's memory limit (0: none)."""
        if self._libc is None:
            return
        kept = _MAX_KEPT if limit_mb <= 0 else min(_MAX_KEPT, (limit_mb << 20) // 4)
        self._libc.mallopt(_M_MMAP_THRESHOLD, min(_MMAP_THRESHOLD, kept))
        self._libc.mallopt(_M_TRIM_THRESHOLD, kept)
        # What start-up freed is kept from now on too: give it back once the worker idles.
        self._used = True

    def wait_for_job(self, sock: socket.socket) -> None:
        """Return when ``sock`` has something to read; if that takes more than
        :data:`IDLE_TRIM_SECONDS` after a job, give the free heap memory back meanwhile."""
        if self._libc is None or not self._used:
            return
        self._used = False
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(IDLE_TRIM_SECONDS * 1000):
            self._libc.malloc_trim(0)

    def job_done(self) -> None:
        """A job ended: the next wait may trim what it left."""
        self._used = True
