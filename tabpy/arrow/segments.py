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
import uuid

__all__ = ["Segment", "is_mapped"]

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
