"""What one instance of a fleet must do: serve through a registry outage, refuse changes with
503 meanwhile, decide concurrent deploys in the database, drain on SIGTERM, say who it is."""

from __future__ import annotations

import hashlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from deploy_support import client_for, pickled, upload
from live_server import ServerProcess, run_tabpy, running_server, wait_for, write_config
from postgres_support import ClusterControl, postgres_cluster

DEPLOYS = 20


def double(values: list[int]) -> list[int]:
    return [2 * v for v in values]


def version_n(n: int) -> Callable[[list[int]], list[int]]:
    def answer(values: list[int]) -> list[int]:
        return [n for _ in values]

    return answer


def query(server: ServerProcess, name: str) -> httpx.Response:
    return server.http.post(f"/query/{name}", json={"data": [[1, 2]]})


@pytest.mark.postgres
def test_an_outage_keeps_reads_serving_and_refuses_changes_with_503(
    launch: Callable[..., ServerProcess],
) -> None:
    with postgres_cluster() as url:
        cluster = ClusterControl(url)
        server = launch({"TABPY_WORKERS": "1", "TABPY_REGISTRY_URL": url}).wait_until_warm()
        with client_for(server) as client:
            client.deploy("double", double)
        assert query(server, "double").json()["response"] == [2, 4]
        sha256 = upload(server.http, pickled(double, "again"))
        fresh = pickled(version_n(9))
        fresh_sha256 = hashlib.sha256(fresh).hexdigest()

        cluster.stop()
        wait_for(lambda: server.http.get("/ready").json()["status"] == "degraded", 30, "degraded")
        refusals = {
            "create": server.http.post("/endpoints", json={"name": "new", "artifact": sha256}),
            "update": server.http.put(
                "/endpoints/double", json={"artifact": sha256, "should_update_version": True}
            ),
            "delete": server.http.delete("/endpoints/double"),
            "rollback": server.http.post("/endpoints/double/rollback", json={"version": 1}),
            "upload": server.http.put(f"/artifacts/{fresh_sha256}", content=fresh),
        }
        for what, response in refusals.items():
            assert response.status_code == 503, (what, response.text)
            assert response.headers["Retry-After"] == "5", what
            body = response.json()
            assert body["message"].startswith("The endpoint registry is unavailable"), what
            assert str(cluster.socket_dir) not in response.text, what
            assert "Traceback" not in server.stderr.text

        # A worker replaced during the outage still gets every endpoint, from the server.
        before = server.worker_pid()
        crashed = server.evaluate("import os\nos._exit(3)")
        assert crashed.status_code == 500
        wait_for(lambda: server.http.get("/ready").status_code == 200, 30, "a new worker")
        assert server.worker_pid() != before
        for _ in range(5):
            reply = query(server, "double")
            assert reply.status_code == 200, reply.text
            assert reply.json()["response"] == [2, 4]

        cluster.start()
        wait_for(lambda: server.http.get("/ready").json()["status"] == "ready", 30, "recovery")
        update = server.http.put(
            "/endpoints/double", json={"artifact": sha256, "should_update_version": True}
        )
        assert update.status_code == 200, update.text
        assert update.json()["double"]["version"] == 2


# --- concurrent deploys from two instances ---------------------------------------------------


@contextmanager
def two_servers(tmp_path: Path, url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    settings = {"TABPY_REGISTRY_URL": url, "TABPY_WORKERS": "1"}
    with (
        running_server(tmp_path / "a", settings) as a,
        running_server(tmp_path / "b", settings) as b,
    ):
        yield a, b


def race_deploys(a: ServerProcess, b: ServerProcess, name: str) -> None:
    """20 deploys of ``name`` at once, alternating between the two servers."""
    artifacts = [upload(a.http, pickled(version_n(n))) for n in range(DEPLOYS)]
    start = threading.Barrier(DEPLOYS)

    def create(n: int) -> httpx.Response:
        server = (a, b)[n % 2]
        start.wait()
        body = {"name": name, "artifact": artifacts[n], "override": True}
        return server.http.post("/endpoints", json=body)

    with ThreadPoolExecutor(DEPLOYS) as pool:
        replies = list(pool.map(create, range(DEPLOYS)))
    assert [r.status_code for r in replies if r.status_code >= 500] == []
    assert [r.status_code for r in replies] == [201] * DEPLOYS, [r.text for r in replies]
    versions = sorted(r.json()[name]["version"] for r in replies)
    assert versions == list(range(1, DEPLOYS + 1))  # one winner per version, no gaps
    history = a.http.get(f"/endpoints/{name}/versions").json()
    assert [v["version"] for v in history] == list(range(1, DEPLOYS + 1))


def race_creates(a: ServerProcess, b: ServerProcess, name: str) -> None:
    """Without override: exactly one create wins; each loser is told, never with a 5xx."""
    sha256 = upload(a.http, pickled(double))
    start = threading.Barrier(DEPLOYS)

    def create(n: int) -> httpx.Response:
        start.wait()
        return (a, b)[n % 2].http.post("/endpoints", json={"name": name, "artifact": sha256})

    with ThreadPoolExecutor(DEPLOYS) as pool:
        replies = list(pool.map(create, range(DEPLOYS)))
    statuses = [r.status_code for r in replies]
    assert statuses.count(201) == 1, statuses
    for reply in replies:
        if reply.status_code == 409:
            assert reply.json()["message"].endswith("by another deploy at the same time.")
        elif reply.status_code == 400:  # it arrived after the winner committed
            assert reply.json()["message"] == f"endpoint {name} already exists."
        else:
            assert reply.status_code == 201, reply.text


def test_concurrent_deploys_on_a_shared_sqlite_registry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with two_servers(tmp_path, url) as (a, b):
        race_deploys(a, b, "raced")
        race_creates(a, b, "created")


@pytest.mark.postgres
def test_concurrent_deploys_on_a_shared_postgresql_registry(tmp_path: Path) -> None:
    with postgres_cluster() as url, two_servers(tmp_path, url) as (a, b):
        race_deploys(a, b, "raced")
        race_creates(a, b, "created")
        wait_for(
            lambda: b.http.get("/status").json()["raced"]["version"] == DEPLOYS,
            10,
            "server B to load the last version",
        )


def test_override_is_decided_against_the_database(tmp_path: Path) -> None:
    # B has not caught up with A's deploy when the client asks B: override still wins.
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with two_servers(tmp_path, url) as (a, b):
        with client_for(a) as client:
            client.deploy("twice", double)
        sha256 = upload(b.http, pickled(version_n(7)))
        body = {"name": "twice", "artifact": sha256, "override": True}
        reply = b.http.post("/endpoints", json=body)
        assert reply.status_code == 201, reply.text
        assert reply.json()["twice"]["version"] == 2
        without = b.http.post("/endpoints", json={"name": "twice", "artifact": sha256})
        assert without.status_code == 400
        assert without.json()["message"] == "endpoint twice already exists."


@pytest.mark.postgres
def test_three_servers_starting_together_on_an_empty_postgresql_all_come_up(
    tmp_path: Path,
) -> None:
    with postgres_cluster() as url:
        servers = [
            ServerProcess(tmp_path / f"s{n}", {"TABPY_REGISTRY_URL": url, "TABPY_WORKERS": "1"})
            for n in range(3)
        ]
        try:
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda s: s.start(), servers))
            for server in servers:
                wait_for(lambda s=server: s.http.get("/ready").status_code == 200, 60, "ready")
        finally:
            for server in servers:
                server.kill()


# --- draining and identity ---------------------------------------------------------------------


def test_sigterm_drains_then_exits_without_failing_a_request(tmp_path: Path) -> None:
    drain = 3.0
    settings = {"TABPY_WORKERS": "1", "TABPY_DRAIN_SECONDS": str(drain)}
    with running_server(tmp_path / "s", settings) as server:
        failures: list[str] = []
        served = 0
        stop = threading.Event()

        def steady_load() -> None:
            nonlocal served
            # A fresh connection each time, as a load balancer's new clients would make.
            while not stop.is_set():
                try:
                    reply = httpx.post(
                        server.url + "/evaluate",
                        json={"script": "return 1", "data": {}},
                        timeout=10,
                    )
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if reply.status_code != 200:
                    failures.append(f"{reply.status_code} {reply.text}")
                served += 1

        loader = threading.Thread(target=steady_load)
        loader.start()
        try:
            wait_for(lambda: served >= 5, 10, "the load to run")
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            response = wait_for(
                lambda: (r := server.http.get("/ready")).status_code == 503 and r,
                1.0,
                "/ready to answer 503 at once",
            )
            assert response.json()["reasons"] == ["draining: this instance is shutting down"]
            before = served
            # Stop the load before the drain ends: after it, the listener closes and a new
            # connection is refused (a load balancer has stopped sending by then).
            wait_for(lambda: time.monotonic() - signalled > drain - 1.0, drain, "the drain")
        finally:
            stop.set()
            loader.join()
        # Started during the drain, still running when the listener closes: it finishes.
        in_flight = server.evaluate("import time\ntime.sleep(1.5)\nreturn 2")
        assert in_flight.status_code == 200 and in_flight.json() == 2
        assert served > before, "requests kept being served during the drain"
        assert failures == []
        assert server.wait() == 0
        elapsed = time.monotonic() - signalled
        assert elapsed >= drain
        assert "Draining on signal 15: not ready for 3 s" in server.stderr.text


def test_every_response_and_log_line_names_the_instance(tmp_path: Path) -> None:
    with running_server(tmp_path / "s", {"TABPY_WORKERS": "1"}) as server:
        expected = f"{socket.gethostname()}:{server.port}"
        for path in ("/info", "/nowhere", "/ready"):
            assert server.http.get(path).headers["X-TabPy-Instance"] == expected, path
        metrics = server.http.get("/metrics").text
        assert f'tabpy_instance_info{{instance_id="{expected}"}} 1.0' in metrics
        assert "[instance " not in server.stderr.text  # a lone server's lines stay short
    with running_server(tmp_path / "t", {"TABPY_WORKERS": "1", "TABPY_INSTANCE_ID": "pod-7"}) as t:
        assert t.http.post("/evaluate", json={}).headers["X-TabPy-Instance"] == "pod-7"
        line = next(line for line in t.stderr.lines if "Web service listening on port" in line)
        assert line.rstrip().endswith("[instance pod-7]")


# --- start-up while the database is down ---------------------------------------------------------


@pytest.mark.postgres
def test_start_up_waits_for_the_database_then_serves(tmp_path: Path) -> None:
    with postgres_cluster() as url:
        cluster = ClusterControl(url)
        cluster.stop()
        settings = {"TABPY_REGISTRY_URL": url, "TABPY_WORKERS": "1"}
        server = ServerProcess(tmp_path / "s", {**settings, "TABPY_REGISTRY_CONNECT_TIMEOUT": "30"})
        starter = threading.Thread(target=server.start)
        try:
            starter.start()
            wait_for(lambda: hasattr(server, "stderr"), 10, "the process")
            wait_for(
                lambda: server.stderr.text.count("not reachable (attempt") >= 2,
                20,
                "two logged retries",
            )
            cluster.start()
            starter.join(60)
            wait_for(lambda: server.http.get("/ready").status_code == 200, 30, "readiness")
        finally:
            starter.join(60)
            server.kill()


@pytest.mark.postgres
def test_start_up_gives_up_after_the_timeout_with_one_line(tmp_path: Path) -> None:
    with postgres_cluster() as url:
        cluster = ClusterControl(url)
        cluster.stop()
        config = write_config(
            tmp_path,
            {
                "TABPY_PORT": "0",
                "TABPY_STATE_PATH": str(tmp_path),
                "TABPY_REGISTRY_URL": url,
                "TABPY_REGISTRY_CONNECT_TIMEOUT": "2",
            },
        )
        started = time.monotonic()
        try:
            done = run_tabpy("--config", str(config), "--disable-auth-warning")
        finally:
            cluster.start()  # the cluster's own teardown stops it
        assert done.returncode == 1
        assert time.monotonic() - started >= 2
        errors = [line for line in done.stderr.splitlines() if line.startswith("tabpy: ")]
        assert len(errors) == 1, done.stderr
        assert errors[0].startswith(
            "tabpy: TABPY_REGISTRY_URL: cannot open the registry database after trying for 2 s"
        )
        assert "Traceback" not in done.stderr
        assert done.stderr.count("not reachable (attempt") >= 2
