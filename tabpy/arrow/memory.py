"""Giving memory back to the system after a table has passed through a process.

Allocators keep freed memory for reuse. After a table has been received, converted or sent,
that would leave a table's worth of memory in the server and in every worker that ever ran a
Prep script, so each of them returns it once done; the next table pays for fresh pages.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pyarrow as pa

__all__ = ["release_memory"]


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
