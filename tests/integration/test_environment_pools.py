"""Endpoints in their own Python environments, served side by side by the real server.

Two environments built with uv pin conflicting versions of six (1.15.0 and 1.16.0); the
server's own environment may have a third version, or none. Each endpoint names its
requirements when it is deployed, and the server builds the environments itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from deploy_support import client_for
from live_server import ServerProcess, module_server, wait_for

from tests.env_support import default_six, main_function

pytestmark = pytest.mark.envs

SIX_VERSION = main_function(
    "def six_version():\n    import six\n    return six.__version__\n", "six_version"
)
CRASH = main_function(
    "def crash():\n    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n", "crash"
)
FOREVER = main_function("def forever():\n    while True:\n        pass\n", "forever")
PID = main_function("def pid():\n    import os\n    return os.getpid()\n", "pid")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {"TABPY_WORKERS": "1", "TABPY_EVALUATE_TIMEOUT": "3", "TABPY_ENV_MAX_POOLS": "4"}
    yield from module_server(tmp_path_factory, settings)


@pytest.fixture(scope="module", autouse=True)
def endpoints(server: ServerProcess) -> None:
    six15, six16 = ["six==1.15.0"], ["six==1.16.0"]
    with client_for(server) as client:
        for name, function, requirements in (
            ("six_a", SIX_VERSION, six15),
            ("six_b", SIX_VERSION, six16),
            ("six_default", SIX_VERSION, None),  # no requirements: the server's own environment
            ("crash", CRASH, six15),
            ("forever", FOREVER, six15),
            ("pid", PID, six16),
        ):
            client.deploy(name, function, requirements=requirements)


def query(server: ServerProcess, name: str, data: Any = ()) -> Any:
    return server.http.post(f"/query/{name}", json={"data": list(data)})


def test_conflicting_versions_are_served_side_by_side(server: ServerProcess) -> None:
    status = server.http.get("/status").json()
    assert status["six_a"]["status"] == status["six_b"]["status"] == "LoadSuccessful"
    assert query(server, "six_a").json()["response"] == "1.15.0"
    assert query(server, "six_b").json()["response"] == "1.16.0"
    # Deployed without requirements, the same function sees the server's own environment.
    default = query(server, "six_default")
    if default_six() is None:
        assert default.status_code == 500
        assert "No module named 'six'" in default.json()["info"]["error"]
    else:
        assert default.json()["response"] == default_six()


def test_tabpy_query_from_a_default_script_reaches_each_environment(server: ServerProcess) -> None:
    script = "return [tabpy.query('six_a')['response'], tabpy.query('six_b')['response']]"
    reply = server.evaluate(script)
    assert (reply.status_code, reply.json()) == (200, ["1.15.0", "1.16.0"])


def test_a_crash_in_an_environment_pool_is_contained(server: ServerProcess) -> None:
    crashed = query(server, "crash")
    assert crashed.status_code == 500
    assert "killed by signal SIGKILL" in json.dumps(crashed.json())
    assert query(server, "six_a").json()["response"] == "1.15.0"  # replaced at once
    assert restarts(server, "crash") >= 1


def test_a_runaway_in_an_environment_pool_is_killed(server: ServerProcess) -> None:
    reply = query(server, "forever")
    assert reply.status_code == 408
    assert reply.json()["message"] == "User defined script timed out. Timeout is set to 3.0 s."
    assert query(server, "six_a").json()["response"] == "1.15.0"
    assert restarts(server, "timeout") >= 1


def test_metrics_label_each_environment(server: ServerProcess) -> None:
    query(server, "pid")
    text = server.http.get("/metrics").text
    labels = set(re.findall(r'tabpy_workers_ready\{environment="([^"]+)"\}', text))
    assert "default" in labels
    assert len(labels) >= 3, labels  # the default pool and both environments'


def restarts(server: ServerProcess, cause: str) -> float:
    """Restarts of ``cause`` in environment pools (every label but the default)."""
    text = server.http.get("/metrics").text
    pattern = rf'tabpy_worker_restarts_total\{{cause="{cause}",environment="([^"]+)"\}} (\S+)'
    return sum(float(n) for label, n in re.findall(pattern, text) if label != "default")


def test_an_environment_pool_serves_from_one_warm_worker(server: ServerProcess) -> None:
    first = wait_for(lambda: query(server, "pid").json().get("response"), 30, "the pid")
    assert query(server, "pid").json()["response"] == first
