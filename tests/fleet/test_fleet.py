"""Three instances on one PostgreSQL registry behind nginx, each on its own host, broken on purpose.

One fleet serves the whole module (starting it is itself a scenario: three instances starting
together on an empty database), and the scenarios run in order on it; the ones that stop an
instance start it again on the same address and port. Unless a test says otherwise, every
request of its load must succeed. Marker ``fleet``: root, ``ip netns``, nginx and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tabpy.registry.change_feed import open_change_feed
from tests.fleet.fleet_support import (
    Instance,
    Load,
    Network,
    Nginx,
    adder,
    deploy,
    percentile,
    prep_flow,
    require_fleet,
    start_together,
    upload,
)
from tests.integration.live_server import wait_for
from tests.integration.postgres_support import ClusterControl, postgres_cluster

pytestmark = [pytest.mark.fleet, pytest.mark.postgres, pytest.mark.nginx]

#: The endpoint the load queries; it adds 1 (a later version may add more, never less).
SERVED = "served"
#: Seconds of load in the failover scenarios, and of the database outage.
LOAD_SECONDS = 6.0
OUTAGE_SECONDS = 10.0
#: The propagation target on PostgreSQL, and how many deploys measure it.
PROPAGATION_P99 = 0.100
PROPAGATION_SAMPLES = 100
#: Seconds between two looks at an instance while timing propagation (the resolution).
POLL_PAUSE = 0.002
#: Seconds of silence watched for in the idle-fleet test.
IDLE_SECONDS = 4.0
IDLE_MARKER = "tabpy fleet idle check"
#: What an instance logs each time its LISTEN connection is up.
LISTENING = "Listening for registry changes"
#: Tableau Prep flows sent through nginx, and the rows of each flow's table.
PREP_FLOWS = 30
PREP_ROWS = 2000


@dataclass
class Fleet:
    instances: list[Instance]
    nginx: Nginx
    database: ClusterControl
    database_url: str
    started_in: float

    def restart(self, instance: Instance) -> None:
        instance.launch()
        instance.wait_started()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    binary = require_fleet()
    with postgres_cluster() as url, Network(3) as network:
        settings = {
            "TABPY_REGISTRY_URL": url,
            "TABPY_WORKERS": "1",
            "TABPY_DRAIN_SECONDS": "1",
            "TABPY_REGISTRY_CONNECT_TIMEOUT": "30",
            # Flight on every instance, each on a port of its own choosing (see Instance).
            "TABPY_ARROW_ENABLE": "true",
        }
        instances = [
            Instance(
                f"fleet-{n}",
                namespace,
                address,
                tmp_path_factory.mktemp(f"instance{n}"),
                dict(settings),
            )
            for n, (namespace, address) in enumerate(
                zip(network.namespaces, network.addresses, strict=True)
            )
        ]
        try:
            started = time.monotonic()
            start_together(instances)
            started_in = time.monotonic() - started
            with Nginx(binary, tmp_path_factory.mktemp("nginx"), instances) as nginx:
                reply = deploy(instances[0], SERVED, adder(1))
                assert reply.status_code == 201, reply.text
                for instance in instances:
                    wait_for(lambda i=instance: _loaded(i, SERVED), 30, f"{instance.name} to load")
                yield Fleet(instances, nginx, ClusterControl(url), url, started_in)
        finally:
            for instance in instances:
                instance.kill()


def _worker_pid(instance: Instance) -> int | None:
    with contextlib.suppress(httpx.HTTPError):
        reply = instance.post("/evaluate", {"script": "import os\nreturn os.getpid()", "data": {}})
        if reply.status_code == 200:
            return int(reply.json())
    return None


def _loaded(instance: Instance, name: str) -> bool:
    status = instance.get("/status").json().get(name, {})
    return status.get("status") == "LoadSuccessful"


def test_three_instances_start_together_on_an_empty_database(fleet: Fleet) -> None:
    # The fixture launched all three at once against a database without tables.
    for instance in fleet.instances:
        reply = instance.get("/ready")
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] == "ready"
        assert reply.headers["x-tabpy-instance"] == instance.name
        wait_for(
            lambda i=instance: "tabpy_registry_listening 1.0" in i.get("/metrics").text,
            10,
            f"{instance.name} to listen for registry changes",
        )
        wait_for(
            lambda i=instance: "tabpy_fleet_members 3.0" in i.get("/metrics").text,
            10,
            f"{instance.name} to count three live members",
        )
    assert fleet.started_in < 60


def test_requests_through_nginx_reach_every_instance(fleet: Fleet) -> None:
    seen = set()
    with httpx.Client(base_url=fleet.nginx.url, timeout=10) as client:
        for _ in range(12):
            reply = client.post(f"/query/{SERVED}", json={"data": [[1]]})
            assert reply.status_code == 200, reply.text
            seen.add(reply.headers["x-tabpy-instance"])
    assert seen == {instance.name for instance in fleet.instances}


def test_prep_flows_through_nginx_cross_instances_and_all_succeed(fleet: Fleet) -> None:
    """30 Tableau Prep flows (DoPut, /evaluate with dataPath, DoGet) through nginx: each step
    goes wherever round-robin sends it, so most flows need a table another instance holds."""
    by_address = {f"{i.address}:{i.flight_port}": i.name for i in fleet.instances}
    by_address.update({f"{i.address}:{i.port}": i.name for i in fleet.instances})
    since = fleet.nginx.access_log.stat().st_size
    started = time.monotonic()
    # One at a time, so that the n-th DoPut, /evaluate and DoGet in nginx's log are one flow.
    # A flow is four gRPC calls and one HTTP request, so with plain round-robin DoPut and
    # /evaluate would land on the same instance in every flow or in none; an extra HTTP
    # request every third flow shifts the two rotations, so both kinds of fetch happen.
    outcomes = []
    with httpx.Client(base_url=fleet.nginx.url, timeout=10) as client:
        for n in range(PREP_FLOWS):
            if n % 3 == 2:
                assert client.get("/info").status_code == 200
            outcomes.append(prep_flow(fleet.nginx, PREP_ROWS))
    took = time.monotonic() - started
    failures = [outcome for outcome in outcomes if outcome is not None]
    assert failures == [], f"{len(failures)} of {PREP_FLOWS} flows failed: {failures[:5]}"

    def landed(request: str) -> list[str]:
        # nginx writes a line once the reply is sent; the last DoGet's may lag a little.
        lines = wait_for(
            lambda: u if len(u := fleet.nginx.upstreams(request, since)) >= PREP_FLOWS else None,
            5,
            f"{PREP_FLOWS} {request.strip()} lines in nginx's access log",
        )
        return [by_address[address] for address in lines]

    puts, evaluates, gets = landed("/DoPut "), landed("POST /evaluate "), landed("/DoGet ")
    assert len(puts) == len(evaluates) == len(gets) == PREP_FLOWS
    flows = list(zip(puts, evaluates, gets, strict=True))
    input_moved = sum(put != evaluate for put, evaluate, _ in flows)
    output_moved = sum(evaluate != get for _, evaluate, get in flows)
    crossed = sum(len(set(flow)) > 1 for flow in flows)
    print(
        f"\nTableau Prep: {PREP_FLOWS} flows of {PREP_ROWS} rows in {took:.1f} s, all succeeded; "
        f"{crossed} crossed instances ({input_moved} inputs and {output_moved} outputs fetched "
        f"from another instance); DoPut on {sorted(set(puts))}, /evaluate on "
        f"{sorted(set(evaluates))}, DoGet on {sorted(set(gets))}"
    )
    # A fleet that never crossed would prove nothing: every step spread over all three, and
    # both the input (fetched by /evaluate) and the output (fetched by DoGet) moved often.
    assert len(set(puts)) == len(set(evaluates)) == len(set(gets)) == len(fleet.instances)
    assert crossed >= PREP_FLOWS // 2, flows
    assert input_moved >= PREP_FLOWS // 6, flows
    assert output_moved >= PREP_FLOWS // 6, flows


def test_propagation_p99_is_under_100_ms(fleet: Fleet) -> None:
    """A new version deployed on A is served by B and C within 100 ms (p99), by LISTEN/NOTIFY."""
    a, *others = fleet.instances
    name = "propagated"
    assert deploy(a, name, adder(1)).status_code == 201
    for instance in others:
        wait_for(lambda i=instance: i.version_of(name) == 1, 10, f"{instance.name} to see v1")
    delays: list[float] = []
    from_request: list[float] = []
    # Made once: a new client costs tens of milliseconds (its TLS context), which would count.
    clients = [httpx.Client(timeout=5) for _ in others]
    # The test listens too: its notification marks the commit, where propagation starts.
    engine = sa.create_engine(fleet.database_url)
    feed = open_change_feed(engine)
    assert feed is not None
    commits: list[float] = []
    feed.subscribe(lambda topic: commits.append(time.monotonic()) if topic == "endpoints" else None)
    wait_for(lambda: feed.listening, 10, "the test's own LISTEN connection")
    for sample in range(PROPAGATION_SAMPLES):
        data = adder(sample + 2)
        sha256 = upload(a, data)  # the upload is not part of a deploy's propagation
        expected = sample + 2
        seen: dict[str, float] = {}

        deadline = time.monotonic() + 5
        polling = [threading.Event() for _ in others]
        watchers = [
            threading.Thread(
                target=_watch, args=(clients[n], i, name, expected, deadline, polling[n], seen)
            )
            for n, i in enumerate(others)
        ]
        for thread in watchers:
            thread.start()
        for event in polling:  # each watcher has asked once: it is looking when the deploy lands
            event.wait(5)
        body = {"artifact": sha256, "should_update_version": True}
        commits.clear()
        sent = time.monotonic()
        reply = a.put(f"/endpoints/{name}", body)
        assert reply.status_code == 200, reply.text
        for thread in watchers:
            thread.join()
        assert set(seen) == {i.name for i in others}, f"version {expected} not seen everywhere"
        wait_for(lambda: commits, 5, "the deploy's notification")
        delays.extend(at - commits[0] for at in seen.values())
        # From the request: an upper bound (it includes A reading and committing the deploy).
        from_request.extend(at - sent for at in seen.values())
    feed.close()
    engine.dispose()
    for client in clients:
        client.close()
    p50, p99 = percentile(delays, 0.50), percentile(delays, 0.99)
    print(
        f"\npropagation, commit of a deploy on A -> served by B and C, {len(delays)} observations: "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms; "
        f"from the deploy request: p50 {percentile(from_request, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(from_request, 0.99) * 1000:.1f} ms"
    )
    assert p99 < PROPAGATION_P99, f"propagation p99 {p99 * 1000:.0f} ms"


def _watch(
    client: httpx.Client,
    instance: Instance,
    name: str,
    version: int,
    deadline: float,
    polling: threading.Event,
    seen: dict[str, float],
) -> None:
    """Record in ``seen`` when ``instance`` first serves ``version`` of ``name``."""
    while time.monotonic() < deadline:
        reply = client.get(f"{instance.url}/endpoints/{name}")
        polling.set()
        if reply.status_code == 200 and reply.json()["version"] == version:
            seen[instance.name] = time.monotonic()
            return
        # Paced: flat-out polling would load the instance whose reaction is being timed.
        time.sleep(POLL_PAUSE)


def test_an_idle_fleet_sends_no_polling_queries(fleet: Fleet) -> None:
    """With LISTEN active the registry sees (almost) nothing from an idle fleet, and each
    instance holds at most its pool (2) and its LISTEN connection."""
    engine = sa.create_engine(
        fleet.database_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
    )
    log = fleet.database.socket_dir.parent / "log"
    with engine.connect() as conn:
        conn.execute(sa.text("ALTER SYSTEM SET log_statement = 'all'"))
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    try:
        start = log.stat().st_size
        time.sleep(IDLE_SECONDS)  # the condition is that nothing happens for this long
        with engine.connect() as conn:  # proves that statements do reach the log
            conn.execute(sa.text(f"SELECT '{IDLE_MARKER}'"))
        lines = wait_for(
            lambda: _log_since(log, start) if IDLE_MARKER in _log_since(log, start) else None,
            5,
            "the marker statement in the server log",
        ).splitlines()
        # Simple statements log as "statement: ...", bound ones as "execute <name>: ...".
        logged = [
            line.replace("execute ", "statement: ", 1) if "statement:" not in line else line
            for line in lines
            if ("statement:" in line or " execute " in line) and IDLE_MARKER not in line
        ]
        # Membership heartbeats (one row written, the live members read, every 5 s by default)
        # are liveness, not change polling: counted apart, transaction brackets left out.
        heartbeats = [line for line in logged if "tabpy_members" in line]
        statements = [
            line
            for line in logged
            if "tabpy_members" not in line
            and line.rsplit("statement:", 1)[1].strip().upper()
            not in ("BEGIN", "COMMIT", "ROLLBACK")
        ]
        with engine.connect() as conn:
            connections = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text("ALTER SYSTEM RESET log_statement"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))
        engine.dispose()
    # Polling every 0.5 s, three instances send about 18 statements a second (72 in 4 s,
    # measured with the feed switched off); the 30 s safety poll may fall in the window once
    # per instance, a few statements each (ping, BEGIN, the revision read, ROLLBACK).
    print(
        f"\nidle fleet: {len(statements)} statements and {len(heartbeats)} heartbeat "
        f"statements in {IDLE_SECONDS:g} s, "
        f"{connections} connections"
    )
    assert len(statements) <= 5 * len(fleet.instances), statements
    beats = IDLE_SECONDS / 5 + 1  # TABPY_MEMBER_HEARTBEAT_SECONDS' default
    assert len(heartbeats) <= 4 * beats * len(fleet.instances), heartbeats
    assert connections <= 3 * len(fleet.instances)


def _log_since(log: Path, offset: int) -> str:
    with log.open("rb") as stream:
        stream.seek(offset)
        return stream.read().decode(errors="replace")


def test_concurrent_deploys_of_one_name_from_two_instances(fleet: Fleet) -> None:
    """20 deploys at once, half on A and half on B: no 5xx, and versions without gaps."""
    a, b, _ = fleet.instances
    name = "contested"
    payloads = [adder(100 + n) for n in range(20)]
    shas = [upload(a, data) for data in payloads]

    def one(n: int) -> httpx.Response:
        instance = a if n % 2 else b
        body = {"name": name, "artifact": shas[n], "override": True}
        return instance.post("/endpoints", body)

    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(one, range(20)))
    statuses = [reply.status_code for reply in replies]
    assert all(status < 500 for status in statuses), [
        r.text for r in replies if r.status_code >= 500
    ]
    assert all(status in (200, 201, 409) for status in statuses), statuses
    versions = a.get(f"/endpoints/{name}/versions").json()
    numbers = [entry["version"] for entry in versions]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) == sum(status in (200, 201) for status in statuses)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_no_request_fails_when_an_instance_stops(fleet: Fleet, signum: int) -> None:
    victim = fleet.instances[2]

    def stop() -> None:
        victim.signal(signum)

    with Load(fleet.nginx.url, SERVED) as load:
        load.run_for(LOAD_SECONDS, during=stop)
    victim.wait_stopped()
    print(f"\n{signal.Signals(signum).name}: {load.sent} requests, {len(load.failures)} failed")
    assert load.sent > 50
    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}"
    fleet.restart(victim)
    wait_for(lambda: _loaded(victim, SERVED), 30, f"{victim.name} to load again")


def test_a_database_outage_under_load(fleet: Fleet) -> None:
    """PostgreSQL down for 10 s: reads never fail, /ready stays 200 but degraded, deploys get
    503 with Retry-After, a worker replaced meanwhile still serves /query, and it all recovers."""
    a, b, c = fleet.instances
    checks: dict[str, object] = {}

    def during_outage() -> None:
        for instance in fleet.instances:
            wait_for(
                lambda i=instance: i.get("/ready").json()["status"] == "degraded",
                10,
                f"{instance.name} to report the outage",
            )
            reply = instance.get("/ready")
            checks[f"ready {instance.name}"] = (reply.status_code, reply.json()["status"])
        reply = b.put(f"/endpoints/{SERVED}", {"description": "during the outage"})
        checks["deploy"] = (reply.status_code, "retry-after" in reply.headers)

    outage_started = time.monotonic()
    fleet.database.stop()
    try:
        with Load(fleet.nginx.url, SERVED) as load:
            load.run_for(LOAD_SECONDS, during=during_outage)
        # A worker replaced during the outage loads the endpoint from the server, not the
        # database (a direct request, outside the load: its own query is the one that fails).
        pid = _worker_pid(a)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _worker_pid(a) != pid, 30, "the worker to be replaced")
        replaced = a.post(f"/query/{SERVED}", {"data": [[41]]})
        remaining = OUTAGE_SECONDS - (time.monotonic() - outage_started)
        if remaining > 0:
            time.sleep(remaining)
    finally:
        fleet.database.start()
    print(f"\ndatabase outage: {load.sent} requests, {len(load.failures)} failed")
    assert load.sent > 50
    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}"
    for instance in fleet.instances:
        assert checks[f"ready {instance.name}"] == (200, "degraded")
    assert checks["deploy"] == (503, True)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["response"] == [42]
    # Recovery by itself: ready again, and a deploy on one instance reaches the others.
    for instance in fleet.instances:
        wait_for(
            lambda i=instance: i.get("/ready").json()["status"] == "ready",
            30,
            f"{instance.name} to notice the database is back",
        )
    # Each instance listens again (the feed reconnected by itself), not only polls.
    for instance in fleet.instances:
        wait_for(
            lambda i=instance: i.stderr.text.count(LISTENING) >= 2,
            15,
            f"{instance.name} to listen for changes again",
        )
    reply = deploy(c, "after_outage", adder(5))
    assert reply.status_code == 201, reply.text
    for instance in (a, b):
        wait_for(
            lambda i=instance: i.version_of("after_outage") == 1,
            10,
            f"{instance.name} to see a deploy made after the outage",
        )


def test_name_description_and_cors_are_the_fleets(fleet: Fleet) -> None:
    """Edited in one instance's state.ini, they reach every instance when it restarts."""
    a, b, c = fleet.instances
    assert len({i.get("/info").json()["name"] for i in fleet.instances}) == 1
    state_ini = c.directory / "state" / "state.ini"
    text = state_ini.read_text(encoding="utf-8")
    text = text.replace("Name = TabPy Server", "Name = Fleet of three")
    text = text.replace(
        "Access-Control-Allow-Origin = ", "Access-Control-Allow-Origin = https://a.example"
    )
    state_ini.write_text(text, encoding="utf-8")
    c.signal(signal.SIGTERM)
    c.wait_stopped()
    fleet.restart(c)
    for instance in fleet.instances:
        wait_for(
            lambda i=instance: i.get("/info").json()["name"] == "Fleet of three",
            5,
            f"{instance.name} to serve the new name",
        )
        reply = instance.get("/info")
        assert reply.headers["access-control-allow-origin"] == "https://a.example"
