"""Prometheus metrics: what the server counts, and ``GET /metrics``.

Each application owns its :class:`Metrics` and with it a private ``CollectorRegistry``, so two
servers in one process (tests, embedders) never share counters. Request metrics are updated by
:class:`~tabpy.server.observe.Observe`; state that lives elsewhere (worker restarts, workers
ready, endpoint load status) is read when Prometheus scrapes, by :class:`RuntimeCollector`, so
nothing is counted twice.

Routes are labelled by their template (``/query/{name}``), never by the raw path, and methods
outside the standard set become ``other``: a client cannot create new time series at will.
Per-endpoint latency is only recorded for endpoints that exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

from tabpy import __version__
from tabpy.errors import MemoryLimitExceeded, ScriptTimeout, TabPyError, WorkerCrashed
from tabpy.runtime.catalog import LoadStatus
from tabpy.runtime.pool import RestartCause
from tabpy.runtime.pools import DEFAULT_ENVIRONMENT, PoolSet
from tabpy.runtime.runtime_errors import ScriptFailed
from tabpy.server.request_metrics import RequestMetrics
from tabpy.server.responses import RawResponse

if TYPE_CHECKING:
    from tabpy.runtime.catalog import Catalog
    from tabpy.runtime.fleet import Fleet
    from tabpy.runtime.pool import WorkerPool

__all__ = ["FleetCollector", "Metrics", "MetricsPage", "RuntimeCollector", "UNMATCHED"]

#: The ``route`` label of a request that matched no route (a 404).
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


class Metrics:
    """The instruments of one server, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        # Updated by every request: plain numbers, turned into samples on scrape.
        self.http = RequestMetrics()
        registry.register(self.http)
        self.script_errors = Counter(
            "tabpy_script_errors",
            "Scripts (/evaluate) and endpoint calls (/query) that failed, by cause: exception "
            "(raised by user code or a failed load), timeout, memory (limit exceeded), crash.",
            ["source", "cause"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "tabpy_auth_failures",
            "Requests refused by authentication, by status: 401 bad or missing credentials, "
            "403 missing scope or role (TABPY_AUTHZ), 406 credentials sent to a server without "
            "authentication, 429 client throttled after repeated failures.",
            ["status"],
            registry=registry,
        )
        self.audit_events = Counter(
            "tabpy_audit_events",
            "Audit trail entries this server wrote, by action (deploy, update, delete, "
            "rollback, grant, revoke, shutdown) and outcome (allowed, refused).",
            ["action", "outcome"],
            registry=registry,
        )
        self.http_refused = Counter(
            "tabpy_http_refused",
            "Connections refused at the HTTP edge before any route ran, by reason: "
            "uri_too_long (414), head_too_large and too_many_headers (431), header_timeout "
            "(408, TABPY_HEADER_TIMEOUT), connection_limit (503, TABPY_MAX_CONNECTIONS), "
            "malformed (400, not HTTP/1.1).",
            ["reason"],
            registry=registry,
        )
        self.http_connections = Gauge(
            "tabpy_http_connections",
            "Open client connections, idle kept-alive ones included.",
            registry=registry,
        )
        Info("tabpy_build", "The running tabpy version.", registry=registry).info(
            {"version": __version__}
        )
        # An info metric rather than a label on every series: Prometheus joins on it when
        # needed (its own "instance" label is the scrape address, which may be a proxy's).
        self.instance = Info(
            "tabpy_instance",
            "Which instance of a fleet this is (TABPY_INSTANCE_ID).",
            registry=registry,
        )
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)

    def watch(
        self,
        pool: Callable[[], PoolSet | WorkerPool | None],
        catalog: Callable[[], Catalog | None],
        fleet: Callable[[], Fleet | None] = lambda: None,
    ) -> None:
        """Export the pools', the catalog's and the fleet's state at every scrape; call once."""
        self.registry.register(RuntimeCollector(pool, catalog))
        self.registry.register(EnvironmentCollector(catalog))
        self.registry.register(FleetCollector(fleet))

    # --- updates (the request path) -----------------------------------------------------------

    def observe_request(
        self, route: str, method: str, status: int, seconds: float, size: int | None
    ) -> None:
        self.http.request(route, method if method in _METHODS else "other", status, seconds, size)

    def observe_endpoint(self, name: str, seconds: float) -> None:
        self.http.endpoints.observe((name,), seconds)

    def script_failed(self, source: str, cause: str) -> None:
        """``source``: evaluate or query; ``cause``: see :func:`failure_cause`."""
        self.script_errors.labels(source, cause).inc()

    def http_refused_for(self, reason: str) -> None:
        self.http_refused.labels(reason).inc()

    def auth_failed(self, status: int) -> None:
        self.auth_failures.labels(str(status)).inc()

    def audit_recorded(self, action: str, outcome: str) -> None:
        """Called by the registry after each audit entry commits (from any thread)."""
        self.audit_events.labels(action, outcome).inc()


class counting_failures:  # noqa: N801 - used like the function it replaced: with counting_failures(...)
    """Count a script that fails, times out, crashes or runs out of memory; let the error go on.

    A class rather than a ``contextlib.contextmanager``: it is entered on every script, and a
    generator-based manager costs a generator and a helper object each time.
    """

    __slots__ = ("metrics", "source")

    def __init__(self, metrics: Metrics, source: str) -> None:
        self.metrics = metrics
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, TabPyError):
            cause = failure_cause(error)
            if cause is not None:
                self.metrics.script_failed(self.source, cause)


def failure_cause(error: TabPyError) -> str | None:
    """The ``cause`` label of a script that ended with ``error``; None if it is not one."""
    if isinstance(error, ScriptTimeout):
        return "timeout"
    if isinstance(error, MemoryLimitExceeded):
        return "memory"
    if isinstance(error, WorkerCrashed):
        return "crash"
    if isinstance(error, ScriptFailed):
        return "exception"
    return None


class RuntimeCollector:
    """Reads the worker pools and the catalog at scrape time.

    Worker metrics carry an ``environment`` label: ``default`` for the server's own pool, the
    environment key's first twelve characters for the pool of a per-endpoint environment.
    """

    def __init__(
        self,
        pool: Callable[[], PoolSet | WorkerPool | None],
        catalog: Callable[[], Catalog | None],
    ) -> None:
        self.pool = pool
        self.catalog = catalog

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(self.pool(), self.catalog())

    def _families(
        self, pool: PoolSet | WorkerPool | None = None, catalog: Catalog | None = None
    ) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "tabpy_worker_restarts",
            "Worker processes replaced, by cause: timeout (script exceeded "
            "TABPY_EVALUATE_TIMEOUT), memory (exceeded TABPY_WORKER_MEMORY_LIMIT_MB), crash "
            "(the process died), cancelled (the client went away mid-script), recycled (it had run "
            "another caller's code: TABPY_ISOLATE_CALLERS), by environment.",
            labels=["cause", "environment"],
        )
        ready = GaugeMetricFamily(
            "tabpy_workers_ready", "Worker processes ready for work.", labels=["environment"]
        )
        size = GaugeMetricFamily(
            "tabpy_workers_configured", "Worker processes configured.", labels=["environment"]
        )
        env_pools = GaugeMetricFamily(
            "tabpy_env_pools", "Worker pools of per-endpoint Python environments running now."
        )
        env_stops = CounterMetricFamily(
            "tabpy_env_pool_stops",
            "Environment pools stopped: idle (TABPY_ENV_IDLE_SECONDS without a call) or evicted "
            "(the least recently used, to stay within TABPY_ENV_MAX_POOLS).",
            labels=["reason"],
        )
        containment = GaugeMetricFamily(
            "tabpy_worker_containment",
            "1 for the mechanism that kills everything a script started (cgroup or subreaper).",
            labels=["mechanism"],
        )
        endpoints = GaugeMetricFamily(
            "tabpy_endpoints", "Deployed endpoints, by load status.", labels=["status"]
        )
        revision = GaugeMetricFamily(
            "tabpy_registry_revision", "Registry revision this server has loaded."
        )
        reachable = GaugeMetricFamily(
            "tabpy_registry_up",
            "1 while the registry database answers; 0: degraded, serving what is loaded.",
        )
        listening = GaugeMetricFamily(
            "tabpy_registry_listening",
            "1 while registry changes arrive by PostgreSQL LISTEN; 0: polling for them.",
        )
        if pool is not None:
            pools = pool if isinstance(pool, PoolSet) else None
            running: list[tuple[str, WorkerPool]]
            if pools is not None:
                running, counts = list(pools.environments()), pools.restarts()
            else:
                single = cast("WorkerPool", pool)
                running, counts = (
                    [(DEFAULT_ENVIRONMENT, single)],
                    {DEFAULT_ENVIRONMENT: single.restarts},
                )
            for label, counter in counts.items():
                # Every cause is always exported, so a rate() works before the first restart.
                for cause in RestartCause:
                    restarts.add_metric([cause.value, label], counter.get(cause, 0))
            for label, each in running:
                ready.add_metric([label], each.ready_workers)
                size.add_metric([label], each.size)
            default = running[0][1]
            if default.containment is not None:
                containment.add_metric([default.containment.name], 1)
            if pools is not None:
                env_pools.add_metric([], pools.running)
                for reason in ("idle", "evicted"):
                    env_stops.add_metric([reason], pools.stops.get(reason, 0))
        if catalog is not None:
            by_status = dict.fromkeys(LoadStatus, 0)
            for state in list(catalog.states.values()):
                by_status[state.status] += 1
            for status, count in by_status.items():
                endpoints.add_metric([status.value], count)
            revision.add_metric([], max(catalog.revision, 0))
            reachable.add_metric([], 1 if catalog.registry_reachable else 0)
            changes = catalog.changes
            listening.add_metric([], 1 if changes is not None and changes.listening else 0)
        yield from (restarts, ready, size, containment, env_pools, env_stops)
        yield from (endpoints, revision, reachable, listening)


class EnvironmentCollector:
    """Per-endpoint environments: how many are built, their disk use, builds running."""

    def __init__(self, catalog: Callable[[], Catalog | None]) -> None:
        self.catalog = catalog

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(self.catalog())

    def _families(self, catalog: Catalog | None = None) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            "tabpy_environments", "Per-endpoint Python environments built and kept on disk."
        )
        disk = GaugeMetricFamily(
            "tabpy_environments_disk_bytes", "Disk used by the built per-endpoint environments."
        )
        building = GaugeMetricFamily(
            "tabpy_environment_builds_running", "Environment builds (uv) running now."
        )
        environments = catalog.environments if catalog is not None else None
        if environments is not None:
            usage = environments.usage()
            count.add_metric([], usage.count)
            disk.add_metric([], usage.disk_bytes)
            building.add_metric([], usage.building)
        yield from (count, disk, building)


class FleetCollector:
    """The fleet as this instance last saw it at its heartbeat (no query at scrape time)."""

    def __init__(self, fleet: Callable[[], Fleet | None]) -> None:
        self.fleet = fleet

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(self.fleet())

    def _families(self, fleet: Fleet | None = None) -> Iterator[Metric]:
        members = GaugeMetricFamily(
            "tabpy_fleet_members",
            "Live members of the fleet sharing the registry, this one included, as read at "
            "the last membership heartbeat.",
        )
        # Nothing before the first heartbeat: 0 would read as "this instance is not alive".
        if fleet is not None and fleet.members:
            members.add_metric([], len(fleet.members))
        yield members


_OPENMETRICS_VERSION = re.compile(r"application/openmetrics-text[^,]*?;\s*version=([^;,\s]*)")
_OPENMETRICS_VERSIONS = frozenset({"0.0.1", "1.0.0"})


class MetricsPage:
    """``GET /metrics``: Prometheus text format, or OpenMetrics when the scraper asks."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def handle(self, request: Request) -> Response:
        accept = request.headers.get("accept", "")
        # An OpenMetrics version we cannot name (``version=abc``) gets the default format, as
        # for a scraper that names none. prometheus_client's own handling of such versions
        # differs between releases (an error, or OpenMetrics anyway), so it is decided here.
        if any(v not in _OPENMETRICS_VERSIONS for v in _OPENMETRICS_VERSION.findall(accept)):
            accept = ""
        encode, content_type = choose_encoder(accept)
        return RawResponse(encode(self.metrics.registry), 200, content_type)
