"""Builds environments off the request path and collects the ones nothing uses.

The catalog asks for a spec's environment with :meth:`Environments.request`: the answer is the
state now (ready, building in some phase, or failed with uv's words), and a build starts in a
thread if none has. When a build ends, ``on_change`` is called (from the build's thread) so the
catalog can publish the endpoint. A spec built before, here or by an earlier process on the same
state path, is ready at once: the key it resolved to is remembered on disk.

With a :class:`LockBook` (the registry, which every instance of a fleet shares), the first
resolution of a spec anywhere is the one that stands: a build first looks for a lock recorded
there and builds it without resolving; otherwise it resolves (or reuses what it built here) and
records the lock, unless another instance recorded one meanwhile, which it then builds instead.
So every instance, and every restart, builds the same key for the same spec.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from tabpy.environments.builder import (
    BuildLimits,
    BuildPhase,
    Toolchain,
    build,
    environment_key,
    lock_file_name,
    resolve,
    share,
    spec_id,
)
from tabpy.environments.cache import BuiltEnvironment, EnvironmentCache
from tabpy.environments.environment_errors import BuildFailed, UvMissing
from tabpy.environments.spec import EnvironmentSpec
from tabpy.environments.uv_runner import find_uv

__all__ = ["BuildState", "EnvironmentUsage", "Environments", "LockBook"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildState:
    """One spec's environment: ``built`` when ready, ``error`` when the build failed."""

    spec: EnvironmentSpec
    phase: BuildPhase
    started: float  # time.monotonic()
    built: BuiltEnvironment | None = None
    error: str | None = None
    finished: float | None = None

    @property
    def ready(self) -> bool:
        return self.built is not None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def message(self) -> str:
        """What ``/status`` says while building: the phase and the time so far."""
        return f"Building environment: {self.phase} ({self.elapsed():.0f} s)"


class LockBook(Protocol):
    """Where a fleet records how each spec resolved (the registry's versions)."""

    def recorded_lock(self, spec: EnvironmentSpec, python_version: str) -> str | None: ...

    def record_lock(
        self, spec: EnvironmentSpec, python_version: str, lock: str, key: str
    ) -> str: ...


@dataclass(frozen=True)
class EnvironmentUsage:
    count: int
    disk_bytes: int
    building: int


class Environments:
    """The one entry point of the package: what the application's wiring creates."""

    def __init__(
        self,
        root: Path,
        toolchain: Toolchain,
        limits: BuildLimits,
        *,
        gc_grace_seconds: float,
        on_build: Callable[[EnvironmentSpec, BuildState], None] | None = None,
        book: LockBook | None = None,
    ) -> None:
        self.book = book
        self.cache = EnvironmentCache(root)
        self.toolchain = toolchain
        self.limits = limits
        self.gc_grace_seconds = gc_grace_seconds
        #: Called from a build's thread when it ends (and for logging and the audit trail).
        self.on_change: Callable[[], None] | None = None
        self.on_build = on_build
        self._states: dict[str, BuildState] = {}
        self._guard = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._in_use: set[str] = set()
        self._unused_since: dict[str, float] = {}
        #: Built but not yet seen by ``retain``: kept, whatever the grace period.
        self._fresh: set[str] = set()
        self._stop = threading.Event()
        self._collector: threading.Thread | None = None

    def start(self) -> None:
        """Create the cache folder, remove what killed builds left, start the collector."""
        for name in self.cache.prepare():
            logger.info("Removed %s left by an interrupted environment build", name)
        now = time.monotonic()
        for built in self.cache.all():
            self._unused_since.setdefault(built.key, now)
            if self.toolchain.shared_with_workers:  # built before TABPY_WORKER_USER was set
                share(built.path)
        self._collector = threading.Thread(
            target=self._collect_loop, name="tabpy-env-gc", daemon=True
        )
        self._collector.start()

    def close(self) -> None:
        self._stop.set()

    # --- what the catalog asks ----------------------------------------------------------------

    def request(self, spec: EnvironmentSpec, *, retry_failed: bool = False) -> BuildState:
        """The environment of ``spec`` now; starts its build if it is neither built nor building.

        ``retry_failed`` builds a spec whose last build failed again (a new version asks).
        """
        sid = spec_id(spec, self.toolchain)
        with self._guard:
            state = self._states.get(sid)
            if state is not None and state.built and not self.cache.find(state.built.key):
                state = None  # collected since
            if state is not None and not (state.failed and retry_failed):
                return state
            # With a lock book, even a spec built here asks the book first (in the build's
            # thread): the key remembered here may not be the one the fleet recorded.
            key = self.cache.key_of(sid) if self.book is None else None
            built = self.cache.find(key) if key is not None else None
            now = time.monotonic()
            if built is not None:
                state = BuildState(spec, BuildPhase.FINISHING, now, built=built, finished=now)
                self._states[sid] = state
                return state
            state = BuildState(spec, BuildPhase.QUEUED, now)
            self._states[sid] = state
        threading.Thread(
            target=self._build, args=(sid, spec), name="tabpy-env-build", daemon=True
        ).start()
        return state

    def unavailable(self) -> str | None:
        """Why this server cannot build environments at all (uv missing), or None."""
        try:
            find_uv()
        except UvMissing as missing:
            return missing.message
        return None

    def state(self, spec: EnvironmentSpec) -> BuildState | None:
        return self._states.get(spec_id(spec, self.toolchain))

    def find_built(self, spec: EnvironmentSpec) -> BuiltEnvironment | None:
        """``spec``'s environment if it is built; never starts a build."""
        sid = spec_id(spec, self.toolchain)
        state = self._states.get(sid)
        if state is not None and state.built is not None:
            return self.cache.find(state.built.key)
        key = self.cache.key_of(sid)
        return None if key is None else self.cache.find(key)

    def retain(self, keys: Iterable[str]) -> None:
        """The environments the endpoints use now; the others may be collected."""
        keys = set(keys)
        now = time.monotonic()
        with self._guard:
            self._fresh.clear()
            for key in self._in_use - keys:
                self._unused_since[key] = now
            for key in keys:
                self._unused_since.pop(key, None)
            self._in_use = keys

    def usage(self) -> EnvironmentUsage:
        """For ``/metrics`` and the status page: built environments, their disk, builds running."""
        built = self.cache.all()
        building = sum(1 for s in list(self._states.values()) if not (s.ready or s.failed))
        return EnvironmentUsage(len(built), sum(b.size for b in built), building)

    def collect(self) -> list[str]:
        """Remove environments unused for the grace period; their keys."""
        now = time.monotonic()
        removed = []
        with self._guard:
            for built in self.cache.all():
                if built.key in self._in_use or built.key in self._fresh:
                    continue
                since = self._unused_since.setdefault(built.key, now)
                if now - since < self.gc_grace_seconds:
                    continue
                self.cache.remove(built.key)
                self._unused_since.pop(built.key, None)
                removed.append(built.key)
            for sid, state in list(self._states.items()):
                if state.built is not None and state.built.key in removed:
                    del self._states[sid]
        for key in removed:
            logger.info("Removed environment %s: no endpoint used it for the grace period", key)
        return removed

    # --- building -----------------------------------------------------------------------------

    def _build(self, sid: str, spec: EnvironmentSpec) -> None:
        started = time.monotonic()
        wall_started = time.time()

        def on_phase(phase: BuildPhase) -> None:
            with self._guard:
                current = self._states.get(sid)
                if current is not None:
                    self._states[sid] = replace(current, phase=phase)

        built: BuiltEnvironment | None = None
        error: str | None = None
        try:
            lock = self._fleet_lock(sid, spec, on_phase)
            built = build(
                spec,
                self.cache,
                self.toolchain,
                self.limits,
                on_phase,
                lock_key=self._lock_key,
                lock=lock,
            )
            self.cache.remember(sid, built.key)
        except BuildFailed as failed:
            error = failed.message
        except Exception as exc:  # noqa: BLE001 - any failure fails the build, with its reason
            error = f"Environment build failed: {type(exc).__name__}: {exc}"
        finished = time.monotonic()
        with self._guard:
            current = self._states.get(sid) or BuildState(spec, BuildPhase.QUEUED, started)
            state = replace(current, built=built, error=error, finished=finished)
            self._states[sid] = state
            if built is not None and built.key not in self._in_use:
                self._unused_since[built.key] = finished  # a grace period before first use
                self._fresh.add(built.key)
        if built is not None and built.created_at < wall_started:
            logger.info("Environment %s was built already (%s)", built.key, spec.summary())
        elif built is not None:
            logger.info(
                "Environment %s ready in %.1f s (%s)", built.key, finished - started, spec.summary()
            )
        else:
            logger.warning("Environment build failed (%s): %s", spec.summary(), error)
        if self.on_build is not None:
            self.on_build(spec, state)
        if self.on_change is not None:
            self.on_change()

    def _fleet_lock(
        self, sid: str, spec: EnvironmentSpec, on_phase: Callable[[BuildPhase], None]
    ) -> str | None:
        """The lock to build: the one the book recorded, or this instance's, recorded now.

        None (resolve in the build) without a book, or for a pylock.toml (built as given). An
        unreachable registry does not stop the build: it resolves here, unrecorded.
        """
        if self.book is None or spec.format == "pylock.toml":
            return None
        python_version = self.toolchain.python_version
        try:
            lock = self.book.recorded_lock(spec, python_version)
        except Exception as exc:  # noqa: BLE001 - build without the fleet's record
            logger.warning("Could not read the recorded lock (%s): %s", spec.summary(), exc)
            return None
        if lock is not None:
            logger.info(
                "Environment (%s): building the lock recorded in the registry", spec.summary()
            )
        else:
            lock = self._local_lock(sid, spec)
            if lock is None:
                on_phase(BuildPhase.RESOLVING)
                logger.info("Resolving requirements (%s)", spec.summary())
                deadline = time.monotonic() + self.limits.timeout
                self.cache.root.mkdir(parents=True, exist_ok=True)  # uv runs in it
                lock = resolve(spec, self.cache, self.toolchain, deadline)
        key = environment_key(lock, python_version)
        try:
            return self.book.record_lock(spec, python_version, lock, key)
        except Exception as exc:  # noqa: BLE001 - the build goes on with this resolution
            logger.warning("Could not record the lock (%s): %s", spec.summary(), exc)
            return lock

    def _local_lock(self, sid: str, spec: EnvironmentSpec) -> str | None:
        """The lock of this spec's environment built here before, if there is one."""
        key = self.cache.key_of(sid)
        built = self.cache.find(key) if key is not None else None
        if built is None:
            return None
        try:
            return (built.path / lock_file_name(spec)).read_text("utf-8")
        except OSError:
            return None

    @contextmanager
    def _lock_key(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def _collect_loop(self) -> None:
        period = min(max(self.gc_grace_seconds / 2, 1.0), 60.0)
        while not self._stop.wait(period):
            try:
                self.collect()
            except Exception as exc:  # noqa: BLE001 - try again next period
                logger.warning("Environment collection failed: %s", exc)
