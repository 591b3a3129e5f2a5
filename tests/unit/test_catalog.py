"""The catalog with a real SQLite registry and a real worker pool, in the test process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from tabpy.registry.deploy_request import DeployRequest
from tabpy.registry.store import Registry
from tabpy.runtime.catalog import POLL_SECONDS, Catalog, LoadStatus
from tabpy.runtime.pool import RestartCause, WorkerPool
from tabpy.runtime.protocol import Job, QueryMeta
from tests.unit.pool_support import evaluate_job, run, started_pool, wait_until


def store(registry: Registry, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    registry.put_artifact(sha256, data)
    return sha256


def deploy(registry: Registry, name: str, function: Any) -> None:
    sha256 = store(registry, cloudpickle.dumps(function))
    request = DeployRequest.to_create({"name": name, "artifact": sha256}, (), Path("/nonexistent"))
    registry.deploy(request, sha256)


def new_version(registry: Registry, name: str, data: bytes) -> None:
    sha256 = store(registry, data)
    body = {"should_update_version": True, "artifact": sha256}
    registry.deploy(DeployRequest.to_update(name, body, {name}, Path("/nonexistent")), sha256)


def redeploy(registry: Registry, name: str, function: Any) -> None:
    new_version(registry, name, cloudpickle.dumps(function))


async def query(catalog: Catalog, pool: WorkerPool, name: str, data: Any) -> Any:
    deployed = catalog.deployed(name)
    assert deployed is not None
    body = json.dumps({"data": data}).encode()
    reply = await pool.submit(Job(QueryMeta(deployed.endpoint), [body], deployed.artifact))
    return json.loads(reply.body)


class CountingRegistry(Registry):
    """A real registry that counts object reads and can be made unreachable."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reads = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("the database is down")

    def snapshot(self) -> Any:
        self._check()
        return super().snapshot()

    def revision(self) -> int:
        self._check()
        return super().revision()

    def artifact_of(self, name: str, version: int) -> bytes:
        self._check()
        self.reads += 1
        return super().artifact_of(name, version)


@pytest.fixture
def registry(tmp_path: Path) -> CountingRegistry:
    return CountingRegistry(f"sqlite:///{tmp_path / 'registry.db'}")


def test_endpoints_load_and_are_served_from_the_servers_copy(registry: CountingRegistry) -> None:
    deploy(registry, "double", lambda x: 2 * x)
    deploy(registry, "broken", lambda x: x)
    # Bytes that do not unpickle, deployed as a version of "broken".
    new_version(registry, "broken", b"not a pickle")

    async def scenario() -> None:
        async with started_pool(size=2) as pool:
            catalog = Catalog(registry, pool)
            await catalog.start()
            try:
                assert (await catalog.wait_loaded("double")).status is LoadStatus.SUCCESSFUL
                broken = await catalog.wait_loaded("broken")
                assert broken.status is LoadStatus.FAILED
                assert broken.last_error.startswith("Load failed: UnpicklingError : ")
                assert (await query(catalog, pool, "double", [21]))["response"] == 42
                assert registry.reads == 2  # each object read once, whatever the workers do
            finally:
                await catalog.close()

    run(scenario)


def test_a_new_version_is_read_once_and_replaces_the_old(registry: CountingRegistry) -> None:
    deploy(registry, "f", lambda: "one")

    async def scenario() -> None:
        async with started_pool() as pool:
            catalog = Catalog(registry, pool)
            await catalog.start()
            try:
                assert (await query(catalog, pool, "f", []))["response"] == "one"
                redeploy(registry, "f", lambda: "two")
                await catalog.refresh()
                await catalog.refresh()  # nothing changed: nothing read
                assert registry.reads == 2
                state = await catalog.wait_loaded("f")
                assert (state.version, state.status) == (2, LoadStatus.SUCCESSFUL)
                reply = await query(catalog, pool, "f", [])
                assert (reply["response"], reply["version"]) == ("two", 2)
                registry.delete("f")
                await catalog.refresh()
                assert catalog.deployed("f") is None
                assert len(pool.directory) == 0
            finally:
                await catalog.close()

    run(scenario)


def test_new_workers_load_endpoints_while_the_registry_is_down(
    registry: CountingRegistry,
) -> None:
    deploy(registry, "double", lambda x: 2 * x)

    async def scenario() -> None:
        async with started_pool() as pool:
            catalog = Catalog(registry, pool)
            await catalog.start()
            try:
                await catalog.wait_loaded("double")
                registry.down = True
                old = int((await pool.submit(evaluate_job("import os\nreturn os.getpid()"))).body)
                os.kill(old, signal.SIGKILL)
                await wait_until(lambda: pool.restarts[RestartCause.CRASH] == 1, "the death")
                await wait_until(lambda: pool.ready_workers == 1, "a replacement worker")
                assert (await query(catalog, pool, "double", [4]))["response"] == 8
                script = "return tabpy.query('double', 5)['response']"
                assert (await pool.submit(evaluate_job(script))).body == b"10"
            finally:
                await catalog.close()

    run(scenario)


class DeletingRegistry(Registry):
    """Deletes an endpoint between the catalog's listing and its read of the object."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.delete_on_read: str | None = None

    def artifact_of(self, name: str, version: int) -> bytes:
        if name == self.delete_on_read:
            self.delete_on_read = None
            self.delete(name)
        return super().artifact_of(name, version)


def test_an_endpoint_deleted_mid_read_is_not_published_without_its_object(
    tmp_path: Path,
) -> None:
    """The listing said "gone" a moment later: publish that, not a version whose object is
    missing (queries then got 500 ``Load failed: LookupError`` instead of 404)."""
    registry = DeletingRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    deploy(registry, "double", lambda x: 2 * x)
    deploy(registry, "kept", lambda x: x)
    registry.delete_on_read = "double"

    async def scenario() -> None:
        async with started_pool(size=1) as pool:
            catalog = Catalog(registry, pool)
            await catalog.start()
            try:
                assert catalog.deployed("double") is None
                kept = catalog.deployed("kept")
                assert kept is not None and kept.artifact.missing is None
            finally:
                await catalog.close()

    run(scenario)


class FakeFeed:
    """A change feed that is listening and is told of changes by the test."""

    def __init__(self) -> None:
        self.listening = True
        self.subscribers: list[Any] = []
        self.closed = False

    def subscribe(self, subscriber: Any) -> None:
        self.subscribers.append(subscriber)

    def tell(self, topic: str) -> None:
        for subscriber in self.subscribers:
            subscriber(topic)

    def close(self) -> None:
        self.closed = True


class RevisionCounter(CountingRegistry):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.revision_reads = 0

    def revision(self) -> int:
        self.revision_reads += 1
        return super().revision()


def test_a_listening_feed_replaces_polling(tmp_path: Path) -> None:
    registry = RevisionCounter(f"sqlite:///{tmp_path / 'registry.db'}")
    deploy(registry, "f", lambda: "one")
    feed = FakeFeed()

    async def scenario() -> None:
        async with started_pool() as pool:
            catalog = Catalog(registry, pool, changes=feed)
            await catalog.start()
            try:
                assert catalog.poll_seconds() > 10 * POLL_SECONDS
                await asyncio.sleep(3 * POLL_SECONDS)
                assert registry.revision_reads == 0  # listening: no polling at all
                redeploy(registry, "f", lambda: "two")
                told = asyncio.get_running_loop().time()
                # Told from another thread, as the feed's own thread does.
                await asyncio.to_thread(feed.tell, "endpoints")
                await wait_until(lambda: catalog.endpoints["f"].version == 2, "the new version")
                assert asyncio.get_running_loop().time() - told < POLL_SECONDS
                feed.listening = False  # the feed is down: polling takes over again
                assert catalog.poll_seconds() == POLL_SECONDS
            finally:
                await catalog.close()
        assert feed.closed

    run(scenario)
