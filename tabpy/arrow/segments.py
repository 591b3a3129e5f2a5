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
    """One segment kept with its memory pages after its table was fetched, for the next upload.

    Writing a table into a fresh memfd makes the kernel allocate and clear every page on the
    way, and closing a memfd frees them again; for a 1M-row table each costs about as much as
    copying the table. Prep flows put and fetch tables one after another, so the segment a
    ``DoGet`` has just streamed is kept (:meth:`give`) and the next upload writes over its
    pages (:meth:`take`), then cuts it to the size written: nothing of the old table is left
    past that size, and every byte before it is overwritten.

    Only a segment no process maps may be kept: the Flight server checks its own mappings, and
    workers never map a result (they write it with ``write``) nor a table that ``DoGet``
    serves without a script. One segment, at most ``max_bytes``, freed by :meth:`drop` when
    Arrow work pauses.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._kept: Segment | None = None

    def take(self) -> Segment:
        """The kept segment (write over it, then cut it to what was written) or a new one."""
        with self._lock:
            segment, self._kept = self._kept, None
        return segment if segment is not None else Segment()

    def give(self, segment: Segment) -> bool:
        """Keep ``segment`` for the next upload; False (and the caller closes it) if one is
        already kept or it is larger than ``max_bytes``."""
        if segment.fd < 0 or segment.size() > self.max_bytes:
            return False
        with self._lock:
            if self._kept is not None:
                return False
            self._kept = segment
        return True

    def drop(self) -> None:
        """Free the kept segment, if there is one."""
        with self._lock:
            segment, self._kept = self._kept, None
        if segment is not None:
            segment.close()

    @property
    def reserved(self) -> int:
        """Bytes kept (0 without a kept segment)."""
        segment = self._kept
        return segment.size() if segment is not None and segment.fd >= 0 else 0
