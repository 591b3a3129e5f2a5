"""Per-endpoint environments against the real server, the real uv and a real package index.

Each test deploys with ``requirements`` and watches the server build the environment: the
version is ``LoadInProgress`` with the build's phase, then ``LoadSuccessful`` (or ``LoadFailed``
with uv's words while the previous version keeps serving). Until the per-environment worker
pools land, a built environment's endpoint still runs in the default pool; these tests check
the deploy and build side: the spec, the cache, the states, restarts and rollbacks.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from deploy_support import deploy_raw, pickled, upload
from live_server import ServerProcess, wait_for

from tabpy.tabpy_tools.client import Client
from tabpy.tabpy_tools.errors import LoadFailedError
from tests.components import require_envs

pytestmark = pytest.mark.envs

#: A build of one small wheel takes about a second with a warm uv cache; a cold one, more.
BUILD_TIMEOUT = 180
SIX_OLD = ["six==1.15.0"]
SIX_NEW = ["six==1.16.0"]


@pytest.fixture(scope="module", autouse=True)
def _uv() -> None:
    require_envs()


def client_for(server: ServerProcess) -> Client:
    return Client(server.url + "/", deploy_timeout=BUILD_TIMEOUT)


def status_of(server: ServerProcess, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = server.http.get("/status").json()[name]
    return entry


def environments_root(server: ServerProcess) -> Path:
    return server.state_path / "environments"


def built(server: ServerProcess) -> list[Path]:
    root = environments_root(server)
    return sorted(p for p in root.iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name))


def leftovers(server: ServerProcess) -> list[str]:
    root = environments_root(server)
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def answer(server: ServerProcess, name: str) -> Any:
    response = server.http.post(f"/query/{name}", json={"data": {}})
    assert response.status_code == 200, response.text
    return response.json()["response"]


def one() -> int:
    return 1


def two() -> int:
    return 2


def test_a_deploy_builds_its_environment_off_the_request_path(launch: Any) -> None:
    server = launch()
    client = client_for(server)
    started = time.monotonic()
    client.deploy("six_new", one, "needs six", requirements=SIX_NEW, wait=False)
    replied = time.monotonic() - started

    building = status_of(server, "six_new")
    assert building["status"] == "LoadInProgress", building
    assert building["last_error"] is None
    environment = building["environment"]
    assert environment["requirements"] == SIX_NEW
    assert environment["phase"] != "ready"

    finished = wait_for(
        lambda: status_of(server, "six_new")["status"] != "LoadInProgress" or None,
        BUILD_TIMEOUT,
        "the build and load check",
    )
    assert finished, status_of(server, "six_new")
    done = status_of(server, "six_new")
    assert done["status"] == "LoadSuccessful", done
    assert done["environment"]["phase"] == "ready"
    assert re.fullmatch(r"[0-9a-f]{64}", done["environment"]["key"])
    assert done["environment"]["elapsed_seconds"] >= 0
    # The reply came before the build ended: deploying does not wait for uv.
    assert replied < done["environment"]["elapsed_seconds"] + 1.0

    info = server.http.get("/endpoints/six_new").json()
    assert info["requirements"] == SIX_NEW
    assert [p.name for p in built(server)] == [done["environment"]["key"]]
    assert (built(server)[0] / "tabpy-environment.json").is_file()
    assert leftovers(server) == []
    assert answer(server, "six_new") == 1

    metrics = server.http.get("/metrics").text
    assert re.search(r"^tabpy_environments 1\.0$", metrics, re.M), metrics
    size = re.search(r"^tabpy_environments_disk_bytes (\S+)$", metrics, re.M)
    assert size is not None and float(size.group(1)) > 0
    page = server.http.get("/").text
    assert "six==1.16.0" in page and "Endpoint environments" in page

    audit = server.http.get("/admin/audit", params={"action": "environment build"})
    assert audit.status_code == 200, audit.text
    (entry,) = audit.json()["entries"]
    assert entry["outcome"] == "allowed" and entry["principal"].startswith("server:")
    assert entry["detail"].startswith("six==1.16.0: built " + done["environment"]["key"])


def test_the_client_waits_for_the_build_and_same_specs_share_one_environment(
    launch: Any,
) -> None:
    server = launch()
    client = client_for(server)
    client.deploy("first", one, requirements=SIX_OLD)
    assert status_of(server, "first")["status"] == "LoadSuccessful"
    started = time.monotonic()
    client.deploy("second", two, requirements=SIX_OLD)
    shared = time.monotonic() - started
    assert len(built(server)) == 1
    assert (
        status_of(server, "first")["environment"]["key"]
        == status_of(server, "second")["environment"]["key"]
    )
    assert answer(server, "second") == 2
    print(f"deploy with an already built spec: {shared:.2f} s")


def test_a_failed_build_says_why_and_the_previous_version_keeps_serving(launch: Any) -> None:
    server = launch()
    client = client_for(server)
    client.deploy("model", one)
    with pytest.raises(LoadFailedError) as failed:
        client.deploy("model", two, override=True, requirements=["tabpyx-no-such-package-zz==1.0"])
    message = failed.value.last_error or ""
    assert "tabpyx-no-such-package-zz" in message
    assert "resolving requirements" in message
    assert "not found in the package registry" in message or "No solution" in message

    state = status_of(server, "model")
    assert state["status"] == "LoadFailed" and state["version"] == 2
    assert state["environment"]["phase"] == "failed"
    assert answer(server, "model") == 1  # version 1, in the default environment
    assert leftovers(server) == []
    assert built(server) == []

    # A fixed deploy builds and serves the new version.
    client.deploy("model", two, override=True, requirements=SIX_NEW)
    assert answer(server, "model") == 2


def test_a_restart_reuses_the_environment_without_building(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "server").start()
    try:
        client_for(first).deploy("model", one, requirements=SIX_NEW)
        (environment,) = built(first)
        before = environment.stat()
        marker = (environment / "tabpy-environment.json").stat()
    finally:
        first.kill()

    second = ServerProcess(tmp_path / "server")
    started = time.monotonic()
    second.start()
    try:
        wait_for(
            lambda: (
                second.http.get("/status").json().get("model", {}).get("status") == "LoadSuccessful"
            ),
            BUILD_TIMEOUT,
            "the endpoint to load after the restart",
        )
        servable = time.monotonic() - started
        (again,) = built(second)
        after = again.stat()
        assert again == environment
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert (again / "tabpy-environment.json").stat().st_mtime_ns == marker.st_mtime_ns
        assert "ready in" not in second.stderr.text  # the build log line of a new build
        assert status_of(second, "model")["environment"]["phase"] == "ready"
        print(f"restart to servable, environment reused: {servable:.2f} s")
    finally:
        second.kill()


def test_a_rollback_restores_the_versions_environment(launch: Any) -> None:
    server = launch()
    client = client_for(server)
    client.deploy("model", one, requirements=SIX_OLD)
    client.deploy("model", two, override=True, requirements=SIX_NEW)
    assert server.http.get("/endpoints/model").json()["requirements"] == SIX_NEW

    restored = client.rollback("model", 1)
    assert restored == 3
    assert server.http.get("/endpoints/model").json()["requirements"] == SIX_OLD
    history = {v["version"]: v["requirements"] for v in client.versions("model")}
    assert history == {1: SIX_OLD, 2: SIX_NEW, 3: SIX_OLD}
    assert answer(server, "model") == 1
    assert len(built(server)) == 2


def test_a_deploy_without_requirements_reads_as_tabpys(default_server: ServerProcess) -> None:
    client = Client(default_server.url + "/")
    client.deploy("plain_env_check", one, override=True)
    info = default_server.http.get("/endpoints/plain_env_check").json()
    assert "requirements" not in info
    assert "environment" not in status_of(default_server, "plain_env_check")
    assert (
        default_server.http.get("/endpoints/plain_env_check/versions").json()[-1]["requirements"]
        is None
    )


@pytest.mark.parametrize(
    ("requirements", "words"),
    [
        ("six", "must be a list or an object"),
        ([], "empty list"),
        (["-e ."], "installer option"),
        (["--index-url=https://example.com"], "installer option"),
        ([""], "non-empty strings"),
        (["six\nnumpy"], "one line"),
        ([3], "non-empty strings"),
        (["==1.0"], "must start with a package name"),
        ({"lock": "six==1.16.0"}, "format must be one of"),
        ({"lock": "", "format": "requirements.txt"}, "not empty"),
        ({"lock": "-r other.txt\n", "format": "requirements.txt"}, "installer option"),
        ({"lock": "not [toml", "format": "uv.lock"}, "not valid TOML"),
        ({"lock": "six", "format": "pylock.toml", "extra": 1}, "unknown keys"),
    ],
)
def test_bad_requirements_are_refused_with_what_to_fix(
    default_server: ServerProcess, requirements: Any, words: str
) -> None:
    response = deploy_raw(default_server.http, "bad_env", pickled(one), requirements=requirements)
    assert response.status_code == 400, response.text
    assert words in response.json()["message"]
    assert default_server.http.get("/endpoints/bad_env").status_code == 404


def test_requirements_need_a_new_version_and_a_model(default_server: ServerProcess) -> None:
    http = default_server.http
    alias = http.post(
        "/endpoints",
        json={"name": "env_alias", "type": "alias", "target": "x", "requirements": SIX_NEW},
    )
    assert alias.status_code == 400 and "alias" in alias.json()["message"]
    assert deploy_raw(http, "env_fields", pickled(one)).status_code in (200, 201)
    update = http.put("/endpoints/env_fields", json={"requirements": SIX_NEW})
    assert update.status_code == 400
    assert "should_update_version" in update.json()["message"]


def test_openapi_describes_requirements(default_server: ServerProcess) -> None:
    document = default_server.http.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "requirements" in schemas["CreateRequest"]["properties"]
    assert "requirements" in schemas["EndpointInfo"]["properties"]
    assert "environment" in schemas["LoadState"]["properties"]
    assert schemas["Requirements"]["oneOf"][1]["properties"]["format"]["enum"] == [
        "uv.lock",
        "pylock.toml",
        "requirements.txt",
    ]


def test_a_requirements_file_is_sent_as_a_lock(launch: Any, tmp_path: Path) -> None:
    server = launch()
    lock = tmp_path / "requirements.txt"
    lock.write_text("six==1.15.0\n", encoding="utf-8")
    client_for(server).deploy("from_file", one, requirements=str(lock))
    info = server.http.get("/endpoints/from_file").json()
    assert info["requirements"] == {"lock": "six==1.15.0\n", "format": "requirements.txt"}
    assert status_of(server, "from_file")["status"] == "LoadSuccessful"


def test_unused_environments_are_collected_after_the_grace_period(launch: Any) -> None:
    server = launch({"TABPY_ENV_GC_GRACE_SECONDS": "1"})
    client = client_for(server)
    client.deploy("model", one, requirements=SIX_OLD)
    (old,) = built(server)
    client.deploy("model", two, override=True, requirements=SIX_NEW)
    wait_for(lambda: not old.exists(), 30, "the unused environment to be collected")
    remaining = built(server)
    assert (
        len(remaining) == 1
        and remaining[0].name == status_of(server, "model")["environment"]["key"]
    )
    assert answer(server, "model") == 2


def test_a_server_without_uv_refuses_requirements_at_deploy_naming_the_fix(
    tmp_path: Path, launch: Any
) -> None:
    # The envs extra not installed: a ``uv`` package that cannot be imported, first on the
    # server's path (the server looks uv up by importing it; nothing in tabpy is changed).
    shadow = tmp_path / "no-uv" / "uv"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('uv is not installed here')\n")
    path = os.pathsep.join(filter(None, [str(shadow.parent), os.environ.get("PYTHONPATH")]))
    server = launch({"TABPY_WORKERS": "1"}, env={"PYTHONPATH": path})

    refused = deploy_raw(server.http, "needs_six", pickled(one), requirements=SIX_NEW)
    assert refused.status_code == 501, refused.text
    assert "pip install 'tabpyx[envs]'" in refused.json()["message"]
    assert server.http.get("/endpoints").json() == {}  # nothing was deployed

    # An update asking for an environment is refused the same way; the version stays.
    assert deploy_raw(server.http, "plain", pickled(one)).status_code == 201
    update = server.http.put(
        "/endpoints/plain",
        json={
            "artifact": upload(server.http, pickled(two)),
            "should_update_version": True,
            "requirements": SIX_NEW,
        },
    )
    assert update.status_code == 501, update.text
    assert server.http.get("/endpoints/plain").json()["version"] == 1
    assert len(server.http.get("/endpoints/plain/versions").json()) == 1
