"""The server's live view of deployed endpoints, their objects and their load status.

The registry is the source of truth; the catalog mirrors it in memory so that ``/status``,
``/endpoints`` and ``/query`` never wait for the database, and so that workers get endpoint
objects from the server (the pool's :class:`~tabpy.runtime.directory.EndpointDirectory`) rather
than from a registry connection of their own. Each object is read from the registry once, when
its version first appears. The catalog refreshes after every change made here and polls the
registry's revision, so changes made by another instance sharing the registry appear within
``POLL_SECONDS``. Each new endpoint version is test-loaded in a worker to report
``LoadSuccessful`` or ``LoadFailed`` with the error, as TabPy does.

A version with its own environment (``requirements`` at deploy) is published only once its
environment is built (by :class:`~tabpy.environments.Environments`, off the request path);
until then, and for good if the build fails, the endpoint's previous version keeps serving,
and its state is ``LoadInProgress`` with the build's phase, then ``LoadFailed`` with uv's words.

Given a :class:`ChangeFeed` (PostgreSQL's ``LISTEN``, wired in by the commands layer), it
re-reads as soon as the feed reports a change and, while the feed is listening, polls only
every ``SAFETY_POLL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from tabpy.environments import BuildState, Environments, EnvironmentSpec
from tabpy.registry.endpoint import Endpoint
from tabpy.registry.store import Registry
from tabpy.runtime.directory import Deployed
from tabpy.runtime.environments import Interpreter
from tabpy.runtime.pool import WorkerPool
from tabpy.runtime.pools import PoolSet
from tabpy.runtime.protocol import Artifact, EndpointRef, Job, LoadMeta
from tabpy.runtime.runtime_errors import ScriptFailed

__all__ = [
    "POLL_SECONDS",
    "SAFETY_POLL_SECONDS",
    "Catalog",
    "ChangeFeed",
    "LoadState",
    "LoadStatus",
]

logger = logging.getLogger(__name__)

#: How often the registry's revision is read when nothing tells the catalog about changes.
POLL_SECONDS = 0.5
#: How often it is read while a change feed is listening: a safety net for a lost notification.
SAFETY_POLL_SECONDS = 30.0


class ChangeFeed(Protocol):
    """Tells about registry changes as they commit (:class:`tabpy.registry.change_feed.ChangeFeed`).

    Subscribers are called from another thread, with the changed topic, and with ``"*"``
    whenever :attr:`listening` changes.
    """

    @property
    def listening(self) -> bool: ...
    def subscribe(self, subscriber: Callable[[str], None]) -> None: ...
    def close(self) -> None: ...


class LoadStatus(str, enum.Enum):
    """Whether an endpoint's current version loads in a worker (TabPy's words)."""

    SUCCESSFUL = "LoadSuccessful"
    FAILED = "LoadFailed"
    IN_PROGRESS = "LoadInProgress"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class LoadState:
    version: int
    type: str
    status: LoadStatus
    last_error: str | None = None
    artifact: str | None = None  # which object this state is about (see Endpoint.artifact)
    #: True while the version waits for its environment's build (no load check yet).
    building: bool = False
    #: The version's environment as ``/status`` shows it, read when shown (the build moves on).
    environment: Callable[[], dict[str, object]] | None = field(default=None, compare=False)

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "version": self.version,
            "type": self.type,
            "status": self.status.value,
            "last_error": self.last_error,
        }
        if self.environment is not None:  # only for a version with its own environment
            body["environment"] = self.environment()
        return body


def endpoint_ref(endpoint: Endpoint) -> EndpointRef:
    return EndpointRef(endpoint.name, endpoint.version, endpoint.type, endpoint.artifact)


#: Listings read before giving up on one that objects keep disappearing from.
_READ_ATTEMPTS = 5


class Catalog:
    def __init__(
        self,
        registry: Registry,
        pool: WorkerPool | PoolSet,
        environments: Environments | None = None,
        changes: ChangeFeed | None = None,
    ) -> None:
        self.registry = registry
        #: Each version is test-loaded in its own environment's pool.
        self.pools = pool if isinstance(pool, PoolSet) else PoolSet(pool)
        self.pool = self.pools.default
        self.environments = environments
        self.changes = changes
        self._woken = asyncio.Event()
        self.revision = -1
        self.endpoints: dict[str, Endpoint] = {}
        self.states: dict[str, LoadState] = {}
        #: The current versions as the registry has them, before waiting for environments.
        self._latest: dict[str, Deployed] = {}
        #: Earlier versions read from the registry to serve while a new one's build runs.
        self._fallbacks: dict[str, Deployed] = {}
        self._checks: dict[tuple[str, int, str | None], asyncio.Task[LoadState]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._refreshing = asyncio.Lock()
        #: False while the revision poll fails: the catalog serves what it last read.
        self.registry_reachable = True

    async def start(self) -> None:
        if self.environments is not None:
            loop = asyncio.get_running_loop()

            def built() -> None:
                # A build ends in its own thread; publishing is the event loop's job.
                with contextlib.suppress(RuntimeError):  # the loop closed: shutting down
                    loop.call_soon_threadsafe(self._publish)

            self.environments.on_change = built
        await self.refresh()
        loop = asyncio.get_running_loop()
        if self.changes is not None:
            self.changes.subscribe(lambda topic: self._wake_from_thread(loop, topic))
        self._watcher = loop.create_task(self._watch())

    def _wake_from_thread(self, loop: asyncio.AbstractEventLoop, topic: str) -> None:
        if topic in ("endpoints", "*"):
            with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
                loop.call_soon_threadsafe(self._woken.set)

    def poll_seconds(self) -> float:
        """The pause between revision reads: long while the change feed is listening."""
        if self.changes is not None and self.changes.listening:
            return SAFETY_POLL_SECONDS
        return POLL_SECONDS

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self.changes is not None:  # the catalog owns the feed (the access rules share it)
            await asyncio.to_thread(self.changes.close)
        for task in self._checks.values():
            task.cancel()
        if self.environments is not None:
            self.environments.close()

    def deployed(self, name: str) -> Deployed | None:
        """The current version of ``name`` with its object, as a job needs it."""
        return self.pool.directory.find(name)

    async def refresh(self) -> None:
        """Re-read the registry (new objects included) and start load checks for new versions."""
        async with self._refreshing:
            held = self.pool.directory.held()
            read = await asyncio.to_thread(self._read, self.revision, held)
            if read is None:
                return
            revision, endpoints, deployed, fallbacks = read
            self.revision, self.endpoints = revision, endpoints
            self._latest, self._fallbacks = deployed, fallbacks
            states: dict[str, LoadState] = {}
            for name, endpoint in endpoints.items():
                known = self.states.get(name)
                current = (endpoint.version, endpoint.type, endpoint.artifact)
                if known is not None and (known.version, known.type, known.artifact) == current:
                    states[name] = known
                    continue
                spec = endpoint.environment
                states[name] = LoadState(
                    endpoint.version,
                    endpoint.type,
                    LoadStatus.IN_PROGRESS,
                    artifact=endpoint.artifact,
                    building=spec is not None,
                    environment=None if spec is None else self._environment_view(spec),
                )
                if spec is None:
                    self._check(deployed[name])
                elif self.environments is not None:
                    self.environments.request(spec, retry_failed=True)
            self.states = states
            self._publish()

    def _publish(self) -> None:
        """Publish what can run now: a version whose environment is not built yet is left out,
        and the endpoint's previous version (if it has one that can run) serves instead."""
        published: dict[str, Deployed] = {}
        for name, deployed in self._latest.items():
            endpoint = self.endpoints[name]
            spec = endpoint.environment
            if spec is None:
                published[name] = deployed
                continue
            build = None if self.environments is None else self.environments.request(spec)
            state = self.states.get(name)
            if build is not None and build.built is not None:
                ready = Deployed(
                    deployed.endpoint,
                    deployed.artifact,
                    Interpreter(build.built.key, build.built.python),
                )
                published[name] = ready
                if state is not None and state.building and state.version == endpoint.version:
                    self.states[name] = replace(state, building=False)
                    self._check(ready)
                continue
            if state is not None and state.building and (build is None or build.failed):
                error = build.error if build is not None else _NO_ENVIRONMENTS
                self.states[name] = replace(
                    state, status=LoadStatus.FAILED, last_error=error, building=False
                )
                logger.info("Endpoint %s version %d: %s", name, endpoint.version, error)
            previous = self.pool.directory.find(name)
            if previous is None or previous.endpoint.version >= endpoint.version:
                previous = self._fallbacks.get(name)
            if previous is not None:
                published[name] = previous
        self.pool.directory.publish(published)
        if self.environments is not None:
            self.environments.retain(
                d.interpreter.key for d in published.values() if d.interpreter is not None
            )

    def _environment_view(self, spec: EnvironmentSpec) -> Callable[[], dict[str, object]]:
        """What ``/status`` shows of a version's environment, read when shown."""

        def view() -> dict[str, object]:
            build = None if self.environments is None else self.environments.state(spec)
            return _environment_json(spec, build)

        return view

    def _read(
        self, known: int, held: dict[str, Artifact]
    ) -> tuple[int, dict[str, Endpoint], dict[str, Deployed], dict[str, Deployed]] | None:
        """In a thread: the registry's endpoints and their objects, unless ``known`` is current.

        Objects are read after the listing, outside its transaction. An object found missing
        while the registry has moved on since the listing (a delete or a new version landed
        in between) means the listing is stale: read again, so a deleted endpoint is published
        as gone (404) rather than as a version without its object (a failed load).
        """
        for _ in range(_READ_ATTEMPTS):
            revision, endpoints = self.registry.snapshot()
            if revision == known:
                return None
            deployed: dict[str, Deployed] = {}
            for name, endpoint in endpoints.items():
                artifact = held.get(endpoint.artifact) if endpoint.artifact is not None else None
                if artifact is None:
                    artifact = self._read_artifact(endpoint)
                    if artifact.data is not None and artifact.sha256 is not None:
                        held[artifact.sha256] = artifact
                deployed[name] = Deployed(endpoint_ref(endpoint), artifact)
            complete = all(d.artifact.missing is None for d in deployed.values())
            if complete or self.registry.revision() == revision:
                break
        fallbacks = {}
        for name, endpoint in endpoints.items():
            if endpoint.environment is not None and not self._can_run(endpoint.environment):
                fallback = self._fallback(endpoint)
                if fallback is not None:
                    fallbacks[name] = fallback
        return revision, endpoints, deployed, fallbacks

    def _can_run(self, spec: EnvironmentSpec) -> bool:
        return self.environments is not None and self.environments.find_built(spec) is not None

    def _fallback(self, endpoint: Endpoint) -> Deployed | None:
        """In a thread: the latest earlier version that can run now (its environment built)."""
        try:
            versions = self.registry.versions(endpoint.name)
        except Exception:  # noqa: BLE001 - deleted meanwhile, or unreachable: nothing to serve
            return None
        for version in reversed(versions):
            if version.version >= endpoint.version or not version.artifact:
                continue
            interpreter = None
            if version.environment is not None:
                built = (
                    self.environments.find_built(version.environment) if self.environments else None
                )
                if built is None:
                    continue
                interpreter = Interpreter(built.key, built.python)
            try:
                data = self.registry.artifact_of(endpoint.name, version.version)
            except LookupError:
                continue
            ref = EndpointRef(endpoint.name, version.version, endpoint.type, version.artifact)
            return Deployed(ref, Artifact(version.artifact, data), interpreter)
        return None

    def _read_artifact(self, endpoint: Endpoint) -> Artifact:
        try:
            data = self.registry.artifact_of(endpoint.name, endpoint.version)
        except LookupError as missing:  # the registry says why; the load check reports it
            return Artifact(endpoint.artifact, None, str(missing))
        return Artifact(endpoint.artifact, data)

    async def wait_loaded(self, name: str) -> LoadState | None:
        """Wait for the current version's load check (bounded by the pool's timeout)."""
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return None
        task = self._checks.get((name, endpoint.version, endpoint.artifact))
        if task is not None:
            await asyncio.shield(task)
        return self.states.get(name)

    def _check(self, deployed: Deployed) -> None:
        endpoint = deployed.endpoint
        key = (endpoint.name, endpoint.version, endpoint.artifact)
        if key in self._checks:
            return
        task = asyncio.get_running_loop().create_task(self._load(deployed))
        self._checks[key] = task
        task.add_done_callback(lambda _: self._checks.pop(key, None))

    async def _load(self, deployed: Deployed) -> LoadState:
        endpoint = deployed.endpoint
        error: str | None = None
        try:
            job = Job(LoadMeta(endpoint), (), deployed.artifact)
            await self.pools.submit(job, deployed.interpreter)
        except ScriptFailed as failed:  # the worker's own words: "Load failed: ..."
            error = failed.message
        except Exception as exc:  # noqa: BLE001 - any failure is a failed load
            error = f"Load failed: {exc}"
        status = LoadStatus.SUCCESSFUL if error is None else LoadStatus.FAILED
        state = LoadState(endpoint.version, endpoint.type, status, error, endpoint.artifact)
        current = self.states.get(endpoint.name)
        if current is not None and (current.version, current.artifact) == (
            endpoint.version,
            endpoint.artifact,
        ):
            state = replace(state, environment=current.environment)
            self.states[endpoint.name] = state
            logger.info("Endpoint %s version %d: %s", endpoint.name, endpoint.version, status)
        return state

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self.poll_seconds())
            woken = self._woken.is_set()
            self._woken.clear()
            try:
                if woken:  # told of a change: read it at once (the snapshot has the revision)
                    await self.refresh()
                else:
                    revision = await asyncio.to_thread(self.registry.revision)
                    if revision != self.revision:
                        await self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving what is loaded
                if self.registry_reachable:
                    logger.warning("Registry check failed: %s", exc)
                self.registry_reachable = False
            else:
                if not self.registry_reachable:
                    logger.info("Registry reachable again")
                self.registry_reachable = True


_NO_ENVIRONMENTS = (
    "This server does not build environments: deploy without requirements, or use a server "
    "with the envs extra installed."
)


def _environment_json(spec: EnvironmentSpec, build: BuildState | None) -> dict[str, object]:
    view: dict[str, object] = {"requirements": spec.as_json()}
    if build is None:
        view["phase"] = "queued"
        return view
    if build.built is not None:
        view.update(phase="ready", key=build.built.key, size_bytes=build.built.size)
    elif build.error is not None:
        view.update(phase="failed")
    else:
        view.update(phase=build.phase.value, message=build.message())
    view["elapsed_seconds"] = round(build.elapsed(), 1)
    return view
