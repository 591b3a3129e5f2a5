"""Large job bodies through memory shared with one worker, instead of through its socket.

Why: a million-row ``/evaluate`` body is about 37 MB. Sent through the worker's socket it is
copied into the kernel and out again, into a buffer the worker allocates afresh for each job;
on a virtual machine most of that time is spent faulting in the new buffer's pages, not moving
bytes. A region that stays mapped in both processes costs one copy (the server's) into pages
that are already there, and the worker decodes straight from it.

Each worker has at most one region, created the first time it gets a body of at least
:data:`SHARED_MIN_BYTES` and replaced by a larger one when a body outgrows it. It is a
``memfd`` (anonymous memory with a file descriptor, never a name in any file system): the
server maps it read-write, passes its descriptor to the worker once (``SCM_RIGHTS``, with the
frame that first uses it) and closes its own descriptor; the worker maps it read-only and
closes its copy too. What remains are the two mappings, so the memory goes away when the
server drops the worker and the worker process ends, whichever way it ends: nothing can leak.

The region holds only bodies sent to that worker, which its scripts could see anyway, so it
opens no path between callers. Being a shared mapping, it does not count against the worker's
memory limit (``RLIMIT_DATA``); its size is bounded by the maximum request size.

This module is imported on both sides; the worker side needs only the standard library.
"""

from __future__ import annotations

import array
import contextlib
import mmap
import os
import socket
from collections.abc import Sequence

__all__ = [
    "SHARED_MIN_BYTES",
    "FD_SPACE",
    "SharedRegion",
    "SharedView",
    "received_fds",
]

#: Bodies from this size on go through the shared region; smaller ones are not worth it.
SHARED_MIN_BYTES = 1 << 20
#: Regions grow in steps of this size, so bodies of similar sizes reuse one region.
_GRANULE = 4 << 20
#: Ancillary buffer size for receiving one descriptor with a frame.
FD_SPACE = socket.CMSG_SPACE(4)


class SharedRegion:
    """The server's end: a ``memfd`` of at least ``size`` bytes, mapped read-write."""

    __slots__ = ("fd", "map", "size")

    def __init__(self, size: int) -> None:
        self.size = -(-size // _GRANULE) * _GRANULE
        create = getattr(os, "memfd_create", None)
        if create is None:  # not Linux: bodies keep going through the socket
            raise OSError("this system has no memfd_create")
        fd = create("tabpy-body", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, self.size)
            self.map = mmap.mmap(fd, self.size)
        except BaseException:
            os.close(fd)
            raise
        #: Until the worker holds it; then closed (:meth:`handed_over`).
        self.fd: int | None = fd

    def fill(self, chunks: Sequence[bytes | bytearray]) -> int:
        """Copy ``chunks`` to the start of the region; their total length."""
        at = 0
        region = self.map
        for chunk in chunks:
            end = at + len(chunk)
            region[at:end] = chunk
            at = end
        return at

    def handed_over(self) -> None:
        """The worker has the descriptor now: the mapping is all the server keeps."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self) -> None:
        self.handed_over()
        self.map.close()


def region_for(current: SharedRegion | None, length: int) -> SharedRegion:
    """``current`` if it can hold ``length`` bytes, else a new region (``current`` closed)."""
    if current is not None:
        if current.size >= length:
            return current
        current.close()
    return SharedRegion(length)


class SharedView:
    """The worker's end: the region it was given last, mapped read-only."""

    __slots__ = ("_map",)

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None

    def adopt(self, fd: int) -> None:
        """Map the region behind ``fd`` (closed here) in place of the previous one."""
        try:
            fresh = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self.release()
        self._map = fresh

    def body(self, length: int) -> memoryview:
        """The first ``length`` bytes of the region (the job's body)."""
        if self._map is None or length > len(self._map):
            raise ValueError("a shared body larger than the shared region")
        return memoryview(self._map)[:length]

    def release(self) -> None:
        old, self._map = self._map, None
        if old is not None:
            # A view of it still alive keeps it mapped until that view goes.
            with contextlib.suppress(BufferError):
                old.close()


#: Fault the whole region in when it is mapped, once, rather than page by page per job.
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in ``recvmsg``'s ancillary data."""
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            numbers = array.array("i")
            numbers.frombytes(data[: len(data) - len(data) % numbers.itemsize])
            fds.extend(numbers)
    return fds
