"""The server's worker pools: the default one, and one per Python environment in use.

Endpoints deployed without requirements run in the default pool, in the server's own
interpreter. An endpoint deployed with requirements names its environment
(:class:`~tabpy.runtime.environments.Interpreter`, on its
:class:`~tabpy.runtime.directory.Deployed`), and runs in that environment's pool, whose workers
a template in the environment's python forks (:mod:`tabpy.runtime.template`). Every pool gives
the same guarantees (kill on timeout, memory cap, crash containment, isolation between
callers): they are all :class:`~tabpy.runtime.pool.WorkerPool` and share the server's one
containment and one endpoint directory.

Environment pools cost a process per worker plus the template, so they exist only while used:

* a pool starts on the first job for its environment (the template warms up in well under a
  second for a small environment);
* a pool that has had no job for ``idle_seconds`` stops;
* at most ``max_pools`` run at once: starting one more stops the least recently used idle one.

A script's ``tabpy.query`` of an endpoint in another environment is run here, in that
endpoint's pool, with the script's caller and rights, and its result goes back to the script
(:meth:`PoolSet.call_elsewhere`); nothing travels over HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from tabpy.errors import TabPyError
from tabpy.runtime.directory import Deployed, EndpointDirectory
from tabpy.runtime.environments import Interpreter
from tabpy.runtime.launchers import Launcher
from tabpy.runtime.pool import RestartCause, WorkerPool
from tabpy.runtime.protocol import Job, QueryCheck, QueryMeta, Reply
from tabpy.runtime.template import TemplateLauncher

__all__ = ["DEFAULT_ENVIRONMENT", "EnvPoolLimits", "PoolSet", "StopReason"]

logger = logging.getLogger(__name__)

#: The metric label and log name of the server's own environment.
DEFAULT_ENVIRONMENT = "default"
#: The idle check runs at most this often (and at least every quarter of the idle time).
_MAX_CHECK_SECONDS = 5.0
_MIN_CHECK_SECONDS = 0.05


@dataclass(frozen=True)
class EnvPoolLimits:
    """How environment pools are sized and when they stop (``TABPY_ENV_*``)."""

    #: Workers per environment pool.
    size: int = 1
    #: Seconds without a job after which an environment pool stops.
    idle_seconds: float = 300.0
    #: Environment pools running at once; one more stops the least recently used.
    max_pools: int = 8


StopReason = str  # "idle" or "evicted"


class PoolSet:
    """The default pool and the environment pools, started and stopped on demand.

    Not thread-safe: the event loop owns it.
    """

    def __init__(
        self,
        default: WorkerPool,
        limits: EnvPoolLimits | None = None,
        *,
        launcher_for: Callable[[Interpreter], Launcher] | None = None,
    ) -> None:
        self.default = default
        self.limits = EnvPoolLimits() if limits is None else limits
        if self.limits.size < 1 or self.limits.max_pools < 1:
            raise ValueError("environment pools need at least one worker and one pool")
        self._launcher_for = launcher_for or (lambda interp: TemplateLauncher(interp.python))
        #: Running environment pools by environment key, least recently used first.
        self._pools: collections.OrderedDict[str, _EnvPool] = collections.OrderedDict()
        #: Restarts of pools that have stopped, so the counters never go down.
        self._retired: dict[str, collections.Counter[RestartCause]] = {}
        #: Environment pools stopped, by reason.
        self.stops: collections.Counter[StopReason] = collections.Counter()
        self._closing: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        default.remote = self.call_elsewhere

    @property
    def directory(self) -> EndpointDirectory:
        """What every pool's workers may run (one directory for all)."""
        return self.default.directory

    def start(self) -> None:
        """Start the default pool; environment pools start on their first job."""
        self.default.start()
        self._watcher = asyncio.get_running_loop().create_task(self._stop_idle())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        pools = list(self._pools.values())
        self._pools.clear()
        await asyncio.gather(
            *(entry.pool.close() for entry in pools), *self._closing, return_exceptions=True
        )
        await self.default.close()

    def pool_for(self, interpreter: Interpreter | None) -> WorkerPool:
        """The pool of ``interpreter`` (None: the default), started if it is not running."""
        if interpreter is None:
            return self.default
        entry = self._pools.get(interpreter.key)
        if entry is None or entry.interpreter != interpreter:
            if entry is not None:  # the same key with another python: the environment moved
                self._stop(interpreter.key, "evicted")
            entry = self._start(interpreter)
        self._pools.move_to_end(interpreter.key)
        entry.used_at = time.monotonic()
        return entry.pool

    async def submit(self, job: Job, interpreter: Interpreter | None = None) -> Reply:
        """Run ``job`` in ``interpreter``'s pool (see :meth:`WorkerPool.submit`)."""
        pool = self.pool_for(interpreter)
        try:
            return await pool.submit(job)
        finally:
            if interpreter is not None:
                entry = self._pools.get(interpreter.key)
                if entry is not None:
                    entry.used_at = time.monotonic()

    async def call_elsewhere(
        self, deployed: Deployed, arguments: bytes, caller: str, may_query: QueryCheck | None
    ) -> bytes:
        """Run a script's ``tabpy.query`` in the endpoint's own pool; the JSON it returns."""
        job = Job(QueryMeta(deployed.endpoint), [arguments], deployed.artifact, caller, may_query)
        try:
            reply = await self.submit(job, deployed.interpreter)
        except TabPyError as error:  # the envelope the script would get over HTTP
            return orjson.dumps({"message": error.message, "info": error.info})
        except Exception as exc:  # noqa: BLE001 - the script decides what to do with it
            logger.exception("Running %s in its environment failed", deployed.endpoint.name)
            return orjson.dumps({"message": "QueryFailed", "info": f"{type(exc).__name__}"})
        return bytes(reply.body)

    def environments(self) -> Iterator[tuple[str, WorkerPool]]:
        """``(label, pool)`` of every running pool, the default first (for metrics and pages)."""
        yield DEFAULT_ENVIRONMENT, self.default
        for entry in list(self._pools.values()):
            yield entry.interpreter.label, entry.pool

    def restarts(self) -> dict[str, collections.Counter[RestartCause]]:
        """Worker restarts by environment label, stopped pools' included."""
        counts = {label: collections.Counter(c) for label, c in self._retired.items()}
        for label, pool in self.environments():
            counts.setdefault(label, collections.Counter()).update(pool.restarts)
        return counts

    @property
    def running(self) -> int:
        """Environment pools running now."""
        return len(self._pools)

    def _start(self, interpreter: Interpreter) -> _EnvPool:
        containment = self.default.containment
        if containment is None:
            raise RuntimeError("start the pool set before running jobs in an environment")
        self._make_room()
        options = dataclasses.replace(
            self.default.options, size=self.limits.size, table_requests=False, extensions={}
        )
        pool = WorkerPool(
            options,
            launcher=self._launcher_for(interpreter),
            directory=self.directory,
            interpreter=interpreter,
            containment=containment,
        )
        pool.remote = self.call_elsewhere
        pool.start()
        logger.info("Started the worker pool of environment %s", interpreter.label)
        entry = _EnvPool(interpreter, pool, time.monotonic())
        self._pools[interpreter.key] = entry
        return entry

    def _make_room(self) -> None:
        """Stop the least recently used idle pool if the cap is reached."""
        if len(self._pools) < self.limits.max_pools:
            return
        for key, entry in self._pools.items():
            if entry.pool.in_flight == 0:
                self._stop(key, "evicted")
                return
        logger.warning(
            "All %d environment pools are busy; running one more than TABPY_ENV_MAX_POOLS",
            len(self._pools),
        )

    def _stop(self, key: str, reason: StopReason) -> None:
        entry = self._pools.pop(key)
        label = entry.interpreter.label
        self._retired.setdefault(label, collections.Counter()).update(entry.pool.restarts)
        self.stops[reason] += 1
        logger.info("Stopping the worker pool of environment %s (%s)", label, reason)
        task = asyncio.get_running_loop().create_task(entry.pool.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _stop_idle(self) -> None:
        idle = self.limits.idle_seconds
        period = min(max(idle / 4, _MIN_CHECK_SECONDS), _MAX_CHECK_SECONDS)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for key, entry in list(self._pools.items()):
                if entry.pool.in_flight == 0 and now - entry.used_at >= idle:
                    with contextlib.suppress(KeyError):
                        self._stop(key, "idle")


@dataclass
class _EnvPool:
    interpreter: Interpreter
    pool: WorkerPool
    #: When its last job started or ended (``time.monotonic``).
    used_at: float
