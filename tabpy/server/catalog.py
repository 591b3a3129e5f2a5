"""The server's live view of deployed endpoints and their load status.

The registry is the source of truth; the catalog mirrors it in memory so that
``/status``, ``/endpoints`` and ``/query`` never wait for the database.  It
refreshes after every change made here and polls the registry's revision, so
changes made by another instance sharing the registry appear within
``POLL_SECONDS``.  Each new endpoint version is test-loaded in a worker to
report ``LoadSuccessful`` or ``LoadFailed`` with the error, as TabPy does.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson

from tabpy.registry.endpoint import Endpoint
from tabpy.registry.store import Registry
from tabpy.runtime.pool import Job, WorkerPool
from tabpy.runtime.protocol import JobKind

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5

LOAD_SUCCESSFUL = "LoadSuccessful"
LOAD_FAILED = "LoadFailed"
LOAD_IN_PROGRESS = "LoadInProgress"


@dataclass(frozen=True)
class LoadState:
    version: int
    type: str
    status: str
    last_error: str | None = None
    artifact: str | None = None  # which object this state is about (see Endpoint.artifact)

    def as_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "type": self.type,
            "status": self.status,
            "last_error": self.last_error,
        }


class Catalog:
    def __init__(self, registry: Registry, pool: WorkerPool, load_timeout: float) -> None:
        self.registry = registry
        self.pool = pool
        self.load_timeout = load_timeout
        self.revision = -1
        self.endpoints: dict[str, Endpoint] = {}
        self.states: dict[str, LoadState] = {}
        self._checks: dict[tuple[str, int, str | None], asyncio.Task[LoadState]] = {}
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        for task in self._checks.values():
            task.cancel()

    async def refresh(self) -> None:
        """Re-read the registry and start load checks for new versions."""
        revision, endpoints = await asyncio.to_thread(self.registry.snapshot)
        if revision == self.revision:
            return
        self.revision, self.endpoints = revision, endpoints
        states: dict[str, LoadState] = {}
        for name, endpoint in endpoints.items():
            known = self.states.get(name)
            current = (endpoint.version, endpoint.type, endpoint.artifact)
            if known is not None and (known.version, known.type, known.artifact) == current:
                states[name] = known
            else:
                states[name] = LoadState(
                    endpoint.version, endpoint.type, LOAD_IN_PROGRESS, artifact=endpoint.artifact
                )
                self._check(endpoint)
        self.states = states

    async def wait_loaded(self, name: str) -> LoadState | None:
        """Wait for the current version's load check (bounded by the load timeout)."""
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return None
        task = self._checks.get((name, endpoint.version, endpoint.artifact))
        if task is not None:
            await asyncio.shield(task)
        return self.states.get(name)

    def _check(self, endpoint: Endpoint) -> None:
        key = (endpoint.name, endpoint.version, endpoint.artifact)
        if key in self._checks:
            return
        task = asyncio.get_running_loop().create_task(self._load(endpoint))
        self._checks[key] = task
        task.add_done_callback(lambda _: self._checks.pop(key, None))

    async def _load(self, endpoint: Endpoint) -> LoadState:
        name, version, endpoint_type = endpoint.name, endpoint.version, endpoint.type
        meta = orjson.dumps({"name": name, "version": version})
        try:
            reply = await self.pool.submit(
                Job(JobKind.LOAD, (), meta, self.revision),
                self.load_timeout,
                str(self.load_timeout),
            )
        except Exception as exc:  # noqa: BLE001 - any failure is a failed load
            error: str | None = f"Load failed: {exc}"
        else:
            error = None if reply.status == 200 else str(orjson.loads(bytes(reply.body)))
        status = LOAD_SUCCESSFUL if error is None else LOAD_FAILED
        state = LoadState(version, endpoint_type, status, error, endpoint.artifact)
        current = self.states.get(name)
        if current is not None and (current.version, current.artifact) == (
            version,
            endpoint.artifact,
        ):
            self.states[name] = state
            logger.info("Endpoint %s version %d: %s", name, version, state.status)
        return state

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                revision = await asyncio.to_thread(self.registry.revision)
                if revision != self.revision:
                    await self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep watching; /ready reports it
                logger.warning("Registry check failed: %s", exc)
