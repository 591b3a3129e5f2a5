"""The worker's heap policy (tabpy.runtime.heap): keep freed memory while jobs come, trim idle."""

from __future__ import annotations

import socket
import time

import pytest

from tabpy.runtime import heap as heap_module
from tabpy.runtime.heap import Heap


class _FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append(("mallopt", parameter, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad, 0))
        return 1


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch) -> _FakeLibc:
    fake = _FakeLibc()
    monkeypatch.setattr(heap_module, "_libc", lambda: fake)
    monkeypatch.setattr(heap_module, "IDLE_TRIM_SECONDS", 0.05)
    return fake


@pytest.mark.parametrize(
    ("limit_mb", "kept"), [(0, 1 << 30), (100, 25 << 20), (64, 16 << 20), (10_000, 1 << 30)]
)
def test_what_the_heap_keeps_is_a_quarter_of_the_memory_limit_at_most(
    libc: _FakeLibc, limit_mb: int, kept: int
) -> None:
    Heap().keep_freed_memory(limit_mb)
    assert libc.calls == [("mallopt", -3, min(32 << 20, kept)), ("mallopt", -1, kept)]


def test_an_idle_worker_gives_its_free_memory_back(libc: _FakeLibc) -> None:
    heap = Heap()
    server, worker = socket.socketpair()
    try:
        # Before any job there is nothing to give back, and no wait.
        heap.wait_for_job(worker)
        assert libc.calls == []
        # A job came and went, and the next one keeps us waiting: trimmed after the idle time.
        heap.job_done()
        began = time.monotonic()
        heap.wait_for_job(worker)
        assert time.monotonic() - began >= 0.04
        assert libc.calls == [("malloc_trim", 0, 0)]
        # Once only: the following idle wait does not trim again.
        heap.wait_for_job(worker)
        assert libc.calls == [("malloc_trim", 0, 0)]
        # A job that follows at once finds the heap as the last one left it.
        heap.job_done()
        server.sendall(b"x")
        heap.wait_for_job(worker)
        assert libc.calls == [("malloc_trim", 0, 0)]
    finally:
        server.close()
        worker.close()


def test_glibc_has_the_controls_here() -> None:
    """On this (glibc) Linux the policy is live, not a no-op."""
    assert heap_module._libc() is not None
