"""Tables in shared memory: anonymous memory files (``memfd``) that other processes open.

The server owns every segment. A worker opens one by path, ``/proc/<server pid>/fd/<n>``
(:attr:`Segment.path`), maps it and reads the Arrow IPC stream inside without copying; the
job meta carries only that path. The kernel frees a segment's memory when its last descriptor
and mapping are gone, so a worker that is killed or crashes leaks nothing: the server closing
its descriptor is the only cleanup there is. Unlike files in ``/dev/shm``, memfds are not
limited by the size of that mount (64 MB in a default Docker container) and never outlive the
server.
"""

from __future__ import annotations

import os
import threading
import uuid

__all__ = ["Segment", "SegmentReserve", "is_mapped"]

PREFIX = "tabpy-arrow-"


class Segment:
    """One memfd, empty when created."""

    __slots__ = ("fd", "name")

    def __init__(self) -> None:
        self.name = PREFIX + uuid.uuid4().hex
        self.fd = os.memfd_create(self.name, os.MFD_CLOEXEC)

    @property
    def path(self) -> str:
        """The path any process of this user opens to reach this segment."""
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"Segment({self.name}, fd={self.fd})"


def is_mapped(name: str) -> bool:
    """True while this process still maps the segment called ``name``."""
    with open("/proc/self/maps", "rb") as maps:
        return name.encode("ascii") in maps.read()


class SegmentReserve:
    """One empty segment whose memory is already allocated, for the next upload.

    Writing a table into a fresh memfd makes the kernel allocate and clear every page on the
    way, which costs about as much as the copy itself. Uploads come one after another (a Prep
    flow puts a table for each script step), so after each one a background thread readies a
    segment of the same size (``posix_fallocate``) while the table is being used, and the next
    upload only copies. The reserve is bounded (one segment, at most ``max_bytes``) and is
    freed by :meth:`drop` when uploads pause.

    Only ever a fresh segment: one that held a table could still be mapped by a worker whose
    script kept a view of it, and must never show that worker another table.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._ready: Segment | None = None
        self._wanted = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> Segment:
        """The reserved segment (its size is the reservation; write over it, then cut it to
        what was written) or, if none is ready, a new empty one."""
        with self._lock:
            segment, self._ready = self._ready, None
        return segment if segment is not None else Segment()

    def refill(self, nbytes: int) -> None:
        """Ready a segment of ``nbytes`` (capped at ``max_bytes``) in the background."""
        nbytes = min(nbytes, self.max_bytes)
        if nbytes <= 0:
            return
        with self._lock:
            self._wanted = nbytes
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tabpy-arrow-reserve", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def drop(self) -> None:
        """Free the reserved segment, if there is one."""
        with self._lock:
            segment, self._ready = self._ready, None
            self._wanted = 0
        if segment is not None:
            segment.close()

    @property
    def reserved(self) -> int:
        """Bytes held ready (0 without a reserved segment)."""
        segment = self._ready
        return segment.size() if segment is not None and segment.fd >= 0 else 0

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                wanted = self._wanted
                if self._ready is not None and self._ready.size() >= wanted:
                    continue
            if wanted <= 0:
                continue
            segment = Segment()
            try:
                os.posix_fallocate(segment.fd, 0, wanted)
            except OSError:  # no memory to spare: the next upload allocates as it goes
                segment.close()
                continue
            with self._lock:
                if self._wanted == 0:  # dropped meanwhile
                    stale: Segment | None = segment
                else:
                    stale, self._ready = self._ready, segment
            if stale is not None:
                stale.close()
