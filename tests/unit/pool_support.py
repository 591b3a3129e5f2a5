"""A real worker pool in the test process, for tests that need workers but no HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import cloudpickle

from tabpy.runtime.directory import Deployed
from tabpy.runtime.pool import PoolOptions, WorkerPool
from tabpy.runtime.protocol import Artifact, EndpointRef, EvaluateMeta, Job, QueryMeta

T = TypeVar("T")

#: Generous: forking workers from a cold template (pandas imported) on a busy 2-core machine.
READY_TIMEOUT = 60.0


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


async def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT
) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def started_pool(**options: Any) -> AsyncIterator[WorkerPool]:
    """A pool with every worker ready; closed (workers killed) on exit."""
    pool = WorkerPool(PoolOptions(**{"size": 1, "timeout": 30.0, **options}))
    pool.start()
    try:
        await wait_until(lambda: pool.ready_workers == pool.size, "the workers to start")
        yield pool
    finally:
        await pool.close()


def evaluate_job(script: str, data: dict[str, Any] | None = None, **extra: Any) -> Job:
    body = json.dumps({"script": script, "data": data or {}, **extra}).encode()
    return Job(EvaluateMeta(), [body])


def deployed(name: str, function: Any, version: int = 1) -> Deployed:
    data = cloudpickle.dumps(function)
    sha256 = hashlib.sha256(data).hexdigest()
    return Deployed(EndpointRef(name, version, "model", sha256), Artifact(sha256, data))


def query_job(endpoint: Deployed, request: Any, artifact: Artifact | None = None) -> Job:
    body = json.dumps(request).encode()
    return Job(QueryMeta(endpoint.endpoint), [body], artifact or endpoint.artifact)
