"""``TABPY_AUTHZ = on`` on a real server: the first admin from ``tabpy-user grant``, roles
granted over HTTP, deploys with the real client, ``tabpy.query`` under a restricted caller, and
start-up refusals. The route-by-role matrix runs in-process (``tests/unit/test_authz_routes``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import (
    ServerProcess,
    clean_environment,
    run_tabpy,
    wait_for,
    write_config,
)

from tabpy.security.passwords import legacy_hash
from tabpy.tabpy_tools.client import Client
from tabpy.tabpy_tools.errors import ForbiddenError

PASSWORD = "P@ssw0rd"
USERS = ("root", "dev", "dev2", "analyst", "restricted", "nobody")
ROLES = {
    "dev": ["deployer", "caller", "evaluator"],
    "dev2": ["deployer"],
    "analyst": ["caller", "evaluator"],
    "restricted": ["caller", "evaluator"],
}


def tabpy_user(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tabpy.cli.user", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("authz")
    pwd_file = directory / "passwords.txt"
    pwd_file.write_text("".join(f"{u} {legacy_hash(u, PASSWORD)}\n" for u in USERS))
    state = directory / "state"
    state.mkdir()
    settings = {"TABPY_PWD_FILE": str(pwd_file), "TABPY_AUTHZ": "on", "TABPY_WORKERS": "1"}
    up = ServerProcess(directory, settings, client={"auth": ("root", PASSWORD)})
    try:
        # The first admin, before the server ever started: the bootstrap.
        granted = tabpy_user(config_of(up), "grant", "-u", "root", "--role", "admin")
        assert granted.returncode == 0, granted.stderr
        up.start()
        for user, roles in ROLES.items():
            for role in roles:
                reply = up.http.post("/admin/principals", json={"principal": user, "role": role})
                assert reply.status_code == 200, reply.text
        yield up.wait_until_warm()
    finally:
        up.kill()


def config_of(server: ServerProcess) -> Path:
    """The server's own config file: tabpy-user reads the registry it names."""
    return Path(server.args[server.args.index("--config") + 1])


def as_user(server: ServerProcess, user: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=(user, PASSWORD), timeout=60)


def client_for(server: ServerProcess, user: str) -> Client:
    client = Client(server.url + "/")
    client.set_credentials(user, PASSWORD)
    return client


def add(x: list[int], y: list[int]) -> list[int]:
    return [a + b for a, b in zip(x, y, strict=True)]


def test_deploys_with_the_real_client_belong_to_the_deployer(server: ServerProcess) -> None:
    client_for(server, "dev").deploy("owned_add", add, "Adds", override=True)
    with as_user(server, "dev") as http:
        assert http.get("/endpoints/owned_add/access").json()["owners"] == ["user:dev"]
    # Another deployer may not replace it.
    with pytest.raises(ForbiddenError) as refused:
        client_for(server, "dev2").deploy("owned_add", lambda x, y: 0, "Mine now", override=True)
    assert "only an owner of endpoint owned_add" in str(refused.value)
    with as_user(server, "analyst") as http:
        reply = http.post("/query/owned_add", json={"data": {"x": [1], "y": [2]}})
        assert reply.status_code == 200 and reply.json()["response"] == [3]
    with as_user(server, "nobody") as http:
        refused_query = http.post("/query/owned_add", json={"data": {"x": [1], "y": [2]}})
        assert refused_query.status_code == 403
        assert "needs the caller role" in refused_query.json()["message"]
    entries = server.http.get("/admin/audit", params={"endpoint": "owned_add"}).json()["entries"]
    assert [(e["principal"], e["action"], e["outcome"]) for e in entries[:2]] == [
        ("user:dev2", "update", "refused"),
        ("user:dev", "deploy", "allowed"),
    ]


def test_a_grant_from_the_command_line_reaches_the_running_server(server: ServerProcess) -> None:
    with as_user(server, "nobody") as http:
        script = {"script": "return 1", "data": {}}
        assert http.post("/evaluate", json=script).status_code == 403
        config = config_of(server)
        assert tabpy_user(config, "grant", "-u", "nobody", "--role", "evaluator").returncode == 0
        wait_for(lambda: http.post("/evaluate", json=script).status_code == 200, 10, "the grant")
        assert tabpy_user(config, "revoke", "-u", "nobody", "--role", "evaluator").returncode == 0
        wait_for(lambda: http.post("/evaluate", json=script).status_code == 403, 10, "the revoke")
    listing = tabpy_user(config_of(server), "list")
    assert "user:root\tadmin\n" in listing.stdout and "user:nobody\t(no role)\n" in listing.stdout


def test_metrics_and_the_status_page_show_the_audit(server: ServerProcess) -> None:
    client_for(server, "dev").deploy("shown", add, "For the page", override=True)
    metrics = server.http.get("/metrics").text
    assert 'tabpy_audit_events_total{action="grant",outcome="allowed"}' in metrics
    page = server.http.get("/").text
    assert "Recent changes" in page and "user:dev: deploy shown version 1 (allowed)" in page


def test_authz_without_authentication_stops_start_up(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"TABPY_AUTHZ": "on", "TABPY_STATE_PATH": str(tmp_path)})
    done = run_tabpy("--config", str(config), "--disable-auth-warning")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "tabpy: TABPY_AUTHZ = on needs authentication to know who is calling: set "
        "TABPY_PWD_FILE (or turn on OAuth), or set TABPY_AUTHZ = off."
    )


def test_tabpy_query_in_a_script_has_the_callers_rights(server: ServerProcess) -> None:
    client_for(server, "dev").deploy("private_add", add, "Adds, for analysts", override=True)
    with as_user(server, "dev") as http:
        limited = http.put("/endpoints/private_add", json={"callers": ["analyst"]})
        assert limited.status_code == 200, limited.text
    script = {"script": "return tabpy.query('private_add', [1], [2])", "data": {}}
    with as_user(server, "analyst") as http:
        assert http.post("/evaluate", json=script).json()["response"] == [3]
    with as_user(server, "restricted") as http:
        refused = http.post("/evaluate", json=script)
        assert refused.status_code == 200  # the script ran; its query was refused
        assert refused.json()["message"] == (
            "Permission denied: endpoint private_add may be queried only by its callers."
        )
        # Directly, the same answer as a 403.
        direct = http.post("/query/private_add", json={"data": {"x": [1], "y": [2]}})
        assert (direct.status_code, direct.json()) == (403, refused.json())
