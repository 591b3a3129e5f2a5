"""One deadline per job, and free workers handed to waiting jobs in arrival order."""

from __future__ import annotations

import asyncio

import pytest

from tabpy.runtime.handoff import Deadline, IdleWorkers


def test_workers_and_waiters_are_served_first_come_first_served() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        idle: IdleWorkers[str] = IdleWorkers()
        assert idle.empty()
        idle.put_nowait("w1")
        idle.put_nowait("w2")
        assert (idle.get_nowait(), idle.get_nowait()) == ("w1", "w2")
        assert idle.empty()
        with pytest.raises(IndexError):
            idle.get_nowait()
        first, second = idle.wait(loop), idle.wait(loop)
        idle.put_nowait("w3")
        assert first.result() == "w3"
        assert not second.done()
        idle.put_nowait("w4")
        assert await second == "w4"
        assert idle.empty()  # handed over, not kept

    asyncio.run(scenario())


def test_a_waiter_that_gave_up_is_skipped() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        idle: IdleWorkers[str] = IdleWorkers()
        timed_out, cancelled, patient = idle.wait(loop), idle.wait(loop), idle.wait(loop)
        timed_out.set_exception(TimeoutError())
        cancelled.cancel()
        idle.put_nowait("w")
        assert patient.result() == "w"
        with pytest.raises(TimeoutError):
            timed_out.result()
        idle.put_nowait("spare")
        assert idle.get_nowait() == "spare"  # no waiter left: kept idle

    asyncio.run(scenario())


def test_the_deadline_fails_what_the_job_awaits_then() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadline = Deadline(loop, loop.time() + 0.05)
        finished: asyncio.Future[str] = loop.create_future()
        deadline.awaiting = finished
        finished.set_result("in time")
        waiting: asyncio.Future[str] = loop.create_future()
        deadline.awaiting = waiting
        assert not deadline.passed
        with pytest.raises(TimeoutError):
            await waiting
        assert deadline.passed
        assert finished.result() == "in time"  # only the awaited future is failed

    asyncio.run(scenario())


def test_a_deadline_reached_between_waits_is_still_known() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadline = Deadline(loop, loop.time())
        await asyncio.sleep(0.01)  # nothing awaited when it passes
        assert deadline.passed

    asyncio.run(scenario())


def test_a_cancelled_deadline_never_fires() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadline = Deadline(loop, loop.time() + 0.01)
        waiting: asyncio.Future[str] = loop.create_future()
        deadline.awaiting = waiting
        deadline.cancel()
        await asyncio.sleep(0.05)
        assert not deadline.passed
        assert not waiting.done()

    asyncio.run(scenario())
