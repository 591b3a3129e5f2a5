"""Readiness decisions and the runtime metrics, with fake workers and a fake registry."""

from __future__ import annotations

import collections
import logging
import threading
import types
from typing import Any

import pytest
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from tabpy.runtime.catalog import LoadState, LoadStatus
from tabpy.runtime.containment import SubreaperContainment
from tabpy.runtime.pool import RestartCause
from tabpy.server import health
from tabpy.server.health import Health
from tabpy.server.metrics import Metrics


class FakeRegistry:
    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()

    def revision(self) -> int:
        self.calls += 1
        self.gate.wait(10)
        if self.error is not None:
            raise self.error
        return 7


def fake_context(ready: int = 2, public: bool = False) -> Any:
    pool = types.SimpleNamespace(
        ready_workers=ready,
        size=2,
        restarts=collections.Counter({RestartCause.TIMEOUT: 3}),
        containment=SubreaperContainment(),
    )
    catalog = types.SimpleNamespace(
        registry=FakeRegistry(),
        revision=7,
        registry_reachable=True,
        changes=types.SimpleNamespace(listening=True),
        states={
            "a": LoadState(1, "model", LoadStatus.SUCCESSFUL),
            "b": LoadState(2, "model", LoadStatus.FAILED, "Load failed: boom"),
        },
    )
    settings = types.SimpleNamespace(health_checks_public=public)
    return types.SimpleNamespace(pool=pool, catalog=catalog, settings=settings, draining=False)


def client_for(context: Any) -> TestClient:
    probes = Health(context)
    app = Starlette(routes=[Route("/health", probes.live), Route("/ready", probes.ready)])
    return TestClient(app)


@pytest.fixture(autouse=True)
def no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "CACHE_SECONDS", 0.0)


def test_ready_when_workers_and_registry_answer() -> None:
    response = client_for(fake_context()).get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "workers": {"ready": 2, "configured": 2},
        "registry": "ok",
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_not_ready_without_workers() -> None:
    response = client_for(fake_context(ready=0)).get("/ready")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["no worker process is ready (0 of 2 started)"]


def test_not_ready_before_the_catalog_is_loaded() -> None:
    context = fake_context()
    context.catalog.revision = -1
    response = client_for(context).get("/ready")
    assert response.status_code == 503
    assert response.json()["reasons"] == [
        "the endpoints have not been loaded from the registry yet"
    ]


def test_not_ready_while_draining_though_everything_works() -> None:
    context = fake_context()
    context.draining = True
    response = client_for(context).get("/ready")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["draining: this instance is shutting down"]


def test_degraded_but_ready_while_the_registry_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The database is shared by the whole fleet: its outage must not empty the load balancer.
    caplog.set_level(logging.INFO, "tabpy.server.health")
    context = fake_context()
    client = client_for(context)
    context.catalog.registry.error = OSError("disk I/O error")
    for _ in range(2):
        response = client.get("/ready")
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["registry"]) == ("degraded", "unavailable")
        assert body["degraded"] == ["the registry cannot be read (OSError: disk I/O error)"]
        assert "reasons" not in body
    context.catalog.registry.error = None
    assert client.get("/ready").json()["status"] == "ready"
    messages = [r.getMessage() for r in caplog.records if r.name == "tabpy.server.health"]
    assert messages == [
        "Degraded: registry check failed (OSError: disk I/O error)",
        "No longer degraded: the registry answers",
    ]


def test_public_reply_leaves_out_the_error_text() -> None:
    context = fake_context(public=True)
    context.catalog.registry.error = OSError("could not connect to db.internal:5432")
    response = client_for(context).get("/ready")
    assert response.json()["status"] == "degraded"
    assert "db.internal" not in response.text


def test_a_hanging_registry_times_out_and_is_not_queried_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health, "REGISTRY_TIMEOUT", 0.2)
    context = fake_context()
    registry = context.catalog.registry
    registry.gate.clear()
    with client_for(context) as client:
        for _ in range(3):
            response = client.get("/ready")
            assert response.status_code == 200
            assert "no answer after" in response.json()["degraded"][0]
        assert registry.calls == 1  # one thread waits on the database, not three
        registry.gate.set()


def test_health_touches_nothing() -> None:
    context = fake_context(ready=0)
    context.catalog.registry.error = OSError("down")
    response = client_for(context).get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert context.catalog.registry.calls == 0


def test_runtime_metrics_read_the_pool_and_catalog() -> None:
    context = fake_context()
    metrics = Metrics()
    metrics.watch(lambda: context.pool, lambda: context.catalog)
    value = metrics.registry.get_sample_value
    default = {"environment": "default"}
    assert value("tabpy_worker_restarts_total", {"cause": "timeout", **default}) == 3
    assert value("tabpy_worker_restarts_total", {"cause": "crash", **default}) == 0
    context.pool.restarts["memory"] += 1  # read at scrape time, not copied
    assert value("tabpy_worker_restarts_total", {"cause": "memory", **default}) == 1
    assert value("tabpy_workers_ready", default) == 2
    assert value("tabpy_endpoints", {"status": "LoadFailed"}) == 1
    assert value("tabpy_endpoints", {"status": "LoadInProgress"}) == 0
    assert value("tabpy_registry_revision") == 7
    assert value("tabpy_worker_containment", {"mechanism": "subreaper"}) == 1
    assert value("tabpy_registry_up") == 1
    context.catalog.registry_reachable = False
    assert value("tabpy_registry_up") == 0
    assert value("tabpy_registry_listening") == 1
    context.catalog.changes.listening = False  # the LISTEN connection dropped: polling
    assert value("tabpy_registry_listening") == 0
    context.catalog.changes = None  # SQLite: never listening
    assert value("tabpy_registry_listening") == 0


def test_fleet_members_gauge_counts_the_members_as_last_read() -> None:
    fleet = types.SimpleNamespace(members=[])
    metrics = Metrics()
    metrics.watch(lambda: None, lambda: None, lambda: fleet)
    value = metrics.registry.get_sample_value
    assert value("tabpy_fleet_members") is None  # before the first heartbeat
    fleet.members = ["fleet-0", "fleet-1", "fleet-2"]  # read at scrape time, not copied
    assert value("tabpy_fleet_members") == 3
    fleet.members = ["fleet-0"]  # the others stopped beating
    assert value("tabpy_fleet_members") == 1


def test_fleet_members_gauge_without_a_fleet() -> None:
    metrics = Metrics()
    metrics.watch(lambda: None, lambda: None)
    assert metrics.registry.get_sample_value("tabpy_fleet_members") is None
    assert "# TYPE tabpy_fleet_members gauge" in generate_latest(metrics.registry).decode()


def test_runtime_metrics_before_the_pool_exists() -> None:
    metrics = Metrics()
    metrics.watch(lambda: None, lambda: None)
    default = {"environment": "default"}
    assert metrics.registry.get_sample_value("tabpy_workers_ready", default) is None
