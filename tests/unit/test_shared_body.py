"""Large job bodies through a region shared with the worker (tabpy.runtime.shared_body)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket

import pytest

from tabpy.errors import TabPyError, WorkerCrashed
from tabpy.runtime.pool import RestartCause, WorkerPool
from tabpy.runtime.protocol import EvaluateMeta, FrameType, Job, pack_header
from tabpy.runtime.shared_body import (
    SHARED_MIN_BYTES,
    SharedRegion,
    SharedView,
    region_for,
)
from tabpy.runtime.worker import Connection
from tests.unit.pool_support import deployed, evaluate_job, query_job, run, started_pool, wait_until

_NAME = "memfd:tabpy-body"


def _open_regions() -> int:
    """Descriptors of shared regions this process holds."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(_NAME):
                count += 1
        except OSError:
            continue
    return count


def _mapped_regions() -> int:
    """Shared regions this process has mapped."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        return sum(1 for line in maps if _NAME in line)


def _column(rows: int) -> list[float]:
    return [i * 0.5 for i in range(rows)]


def test_a_region_grows_in_steps_and_is_reused_while_it_fits() -> None:
    region = region_for(None, 5 << 20)
    try:
        assert region.size == 8 << 20  # 4 MiB steps
        assert region_for(region, 8 << 20) is region
        bigger = region_for(region, (8 << 20) + 1)
        assert bigger is not region and bigger.size == 12 << 20
        assert region.map.closed  # the outgrown one is let go at once
    finally:
        bigger.close()
    assert _open_regions() == 0


def test_the_worker_end_receives_the_region_with_the_frame() -> None:
    """A SHARED_JOB frame carries the region's descriptor; the worker reads the body from it."""
    body = os.urandom(3 << 20)
    server, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    region = SharedRegion(len(body))
    try:
        assert region.fill([body[:1000], bytearray(body[1000:])]) == len(body)
        meta = b'{"job": {}}'
        header = pack_header(FrameType.SHARED_JOB, 1, len(meta), 0, len(body))
        assert region.fd is not None
        socket.send_fds(server, [header + meta], [region.fd])
        region.handed_over()
        assert region.fd is None and _open_regions() == 0  # only the mapping is left

        connection = Connection(worker)
        frame = connection.receive()
        assert frame is not None
        assert (frame.type, frame.code, bytes(frame.meta)) == (FrameType.JOB, 1, meta)
        assert bytes(frame.body) == body
        assert _open_regions() == 0  # the worker closed its descriptor after mapping it

        # The next job reuses the region: no descriptor comes with it.
        second = os.urandom(SHARED_MIN_BYTES)
        frame.body.release()
        region.fill([second])
        server.sendall(pack_header(FrameType.SHARED_JOB, 1, 0, 0, len(second)))
        again = connection.receive()
        assert again is not None and bytes(again.body) == second
        again.body.release()
        connection.shared.release()
    finally:
        region.close()
        server.close()
        worker.close()
    assert _mapped_regions() == 0


def test_a_body_larger_than_the_region_is_refused_by_the_worker_end() -> None:
    view = SharedView()
    with pytest.raises(ValueError):
        view.body(1)


def _large_job(rows: int) -> tuple[bytes, Job]:
    data = {"_arg1": _column(rows), "_arg2": _column(rows)}
    job = evaluate_job("return [x + y for x, y in zip(_arg1, _arg2)]", data)
    return b"".join(job.body), job


def _expected(rows: int) -> bytes:
    return json.dumps([x + x for x in _column(rows)]).encode()


def test_large_bodies_go_through_the_region_and_give_the_same_reply() -> None:
    async def scenario() -> None:
        async with started_pool() as pool:
            worker = next(iter(pool._workers))
            small = 1000
            reply = await pool.submit(_large_job(small)[1])
            assert bytes(reply.body) == _expected(small)
            assert worker.shared is None  # small bodies take the socket

            rows = 120_000
            raw, job = _large_job(rows)
            assert len(raw) >= SHARED_MIN_BYTES
            reply = await pool.submit(job)
            assert bytes(reply.body) == _expected(rows)
            region = worker.shared
            assert region is not None and region.size >= len(raw)
            assert _open_regions() == 0 and _mapped_regions() == 1

            # Smaller again: the same region, and only this job's bytes count.
            rows = 60_000
            reply = await pool.submit(_large_job(rows)[1])
            assert bytes(reply.body) == _expected(rows)
            assert worker.shared is region

            # Larger: a new region replaces it, in both processes.
            rows = 400_000
            raw, job = _large_job(rows)
            reply = await pool.submit(job)
            assert bytes(reply.body) == _expected(rows)
            assert worker.shared is not region and worker.shared.size >= len(raw)
            assert _mapped_regions() == 1

            # A malformed large body gets the same answer as a small one through the socket.
            start = b'{"script": "return 1", "data": {"_arg1": ['
            failures = []
            for body in (start + b"1,", start + b"1," * SHARED_MIN_BYTES):
                with pytest.raises(TabPyError) as failed:
                    await pool.submit(Job(EvaluateMeta(), [body]))
                failures.append((type(failed.value), failed.value.message))
            assert failures[0] == failures[1]

    run(scenario)


def test_a_large_query_body_goes_through_the_region() -> None:
    total = deployed("total", lambda values: sum(values))

    async def scenario() -> None:
        async with started_pool() as pool:
            values = _column(150_000)
            job = query_job(total, {"data": {"values": values}})
            assert sum(len(chunk) for chunk in job.body) >= SHARED_MIN_BYTES
            reply = await pool.submit(job)
            assert json.loads(reply.body)["response"] == sum(values)
            assert next(iter(pool._workers)).shared is not None

    run(scenario)


def test_a_worker_killed_mid_job_leaves_no_region_behind() -> None:
    async def scenario() -> None:
        async with started_pool() as pool:
            rows = 120_000
            data = {"_arg1": _column(rows)}
            job = evaluate_job("import time\ntime.sleep(60)", data)
            pid_job = evaluate_job("import os\nreturn os.getpid()")
            pid = int((await pool.submit(pid_job)).body)
            running = asyncio.ensure_future(pool.submit(job))
            await wait_until(lambda: _mapped_regions() == 1, "the body in the shared region")
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(WorkerCrashed):
                await running
            assert pool.restarts == {RestartCause.CRASH: 1}
            await wait_until(lambda: pool.ready_workers == 1, "a replacement worker")
            assert _mapped_regions() == 0 and _open_regions() == 0
            # The replacement gets a region of its own.
            raw, large = _large_job(rows)
            assert bytes((await pool.submit(large)).body) == _expected(rows)
            assert _mapped_regions() == 1

    run(scenario)


def test_closing_the_pool_unmaps_every_region() -> None:
    async def scenario() -> WorkerPool:
        async with started_pool(size=2) as pool:
            jobs = [_large_job(100_000)[1] for _ in range(2)]
            await asyncio.gather(*(pool.submit(job) for job in jobs))
            assert 1 <= _mapped_regions() <= 2
        return pool

    run(scenario)
    assert _mapped_regions() == 0 and _open_regions() == 0
