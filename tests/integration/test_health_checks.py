"""``/health`` and ``/ready`` on the real server: authentication both ways, and readiness
while the registry database is down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from live_server import ServerProcess, wait_for
from postgres_support import ClusterControl, postgres_cluster
from security_support import basic, password_line

ALICE = basic("alice", "P@ssw0rd")


def protected_server(
    launch: Callable[..., ServerProcess], tmp_path: Path, public: str
) -> ServerProcess:
    pwd_file = tmp_path / "passwords.txt"
    pwd_file.write_text(password_line("alice", "P@ssw0rd"), encoding="utf-8")
    return launch(
        {
            "TABPY_PWD_FILE": str(pwd_file),
            "TABPY_WORKERS": "1",
            "TABPY_HEALTH_CHECKS_PUBLIC": public,
        }
    )


def ready_with(server: ServerProcess, headers: dict[str, str]) -> bool:
    return server.http.get("/ready", headers=headers).status_code == 200


def test_health_checks_need_credentials_by_default(
    launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = protected_server(launch, tmp_path, "false")
    for path in ("/health", "/ready", "/metrics"):
        response = server.http.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == 'Basic realm="TabPy Server"'
    assert server.http.get("/health", headers={"Authorization": ALICE}).status_code == 200
    wait_for(lambda: ready_with(server, {"Authorization": ALICE}), 30, "readiness")
    metrics = server.http.get("/metrics", headers={"Authorization": ALICE}).text
    assert 'tabpy_auth_failures_total{status="401"} 3.0' in metrics


def test_public_health_checks_open_only_those_two_routes(
    launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = protected_server(launch, tmp_path, "true")
    assert server.http.get("/health").json() == {"status": "ok"}
    wait_for(lambda: ready_with(server, {}), 30, "readiness without credentials")
    for path in ("/", "/info", "/metrics", "/status"):
        assert server.http.get(path).status_code == 401, path


def test_public_health_checks_ignore_credentials_on_a_server_without_auth(
    launch: Callable[..., ServerProcess],
) -> None:
    server = launch({"TABPY_WORKERS": "1", "TABPY_HEALTH_CHECKS_PUBLIC": "true"})
    # Without the setting this would be TabPy's 406 for credentials sent to an open server.
    assert server.http.get("/health", headers={"Authorization": ALICE}).status_code == 200
    assert server.http.get("/info", headers={"Authorization": ALICE}).status_code == 406


@pytest.mark.postgres
def test_ready_stays_true_but_degraded_while_the_registry_is_down(
    launch: Callable[..., ServerProcess],
) -> None:
    # Every instance shares the database: its outage must not empty the load balancer.
    with postgres_cluster() as url:
        cluster = ClusterControl(url)
        server = launch({"TABPY_WORKERS": "1", "TABPY_REGISTRY_URL": url})
        wait_for(lambda: ready_with(server, {}), 30, "readiness with the database up")

        cluster.stop()
        response = wait_for(
            lambda: (r := server.http.get("/ready")).json()["status"] == "degraded" and r,
            30,
            "/ready to report the stopped database",
        )
        body = response.json()
        assert response.status_code == 200 and body["registry"] == "unavailable"
        assert body["degraded"][0].startswith("the registry cannot be read (")
        wait_for(
            lambda: "tabpy_registry_up 0.0" in server.http.get("/metrics").text,
            10,
            "the metric to show the outage",
        )
        wait_for(lambda: "Degraded: registry check failed" in server.stderr.text, 10, "the log")

        cluster.start()
        wait_for(
            lambda: server.http.get("/ready").json()["status"] == "ready",
            30,
            "/ready to recover",
        )
        wait_for(
            lambda: "tabpy_registry_up 1.0" in server.http.get("/metrics").text,
            10,
            "the metric to recover",
        )
