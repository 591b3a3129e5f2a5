"""Worker pools of per-endpoint Python environments, with real environments and processes.

Each test runs a :class:`PoolSet` in the test process: the default pool (its template runs the
server's own interpreter) and pools whose workers a template forks in a virtualenv built with uv
holding ``six==1.15.0``, a package the server's own environment lacks. The guarantees of the
default pool (kill on timeout, memory cap, crash containment, isolation between callers, no
server settings in a worker) are checked again inside an environment pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tabpy.errors import MemoryLimitExceeded, ScriptTimeout, WorkerCrashed
from tabpy.runtime.directory import Deployed
from tabpy.runtime.environments import Interpreter
from tabpy.runtime.pool import PoolOptions, RestartCause, WorkerPool
from tabpy.runtime.pools import EnvPoolLimits, PoolSet
from tabpy.runtime.protocol import Job, QueryMeta, Refused
from tabpy.runtime.runtime_errors import QueryUnanswered, ScriptFailed
from tabpy.runtime.template import TemplateLauncher
from tabpy.server.index import _environment_pools_text
from tabpy.server.metrics import Metrics
from tests.env_support import build_environment, default_six, main_function
from tests.unit.pool_support import deployed, evaluate_job, run, wait_until

pytestmark = pytest.mark.envs

SIX_VERSION = main_function(
    "def six_version(*args):\n    import six\n    return six.__version__\n", "six_version"
)
PID = main_function("def pid(*args):\n    import os\n    return os.getpid()\n", "pid")
CRASH = main_function(
    "def crash():\n    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n", "crash"
)
RUNAWAY = main_function(
    "def runaway(path):\n"
    "    import subprocess\n"
    "    child = subprocess.Popen(['sleep', '120'], start_new_session=True)\n"
    "    with open(path, 'w') as f:\n"
    "        f.write(str(child.pid))\n"
    "    while True:\n"
    "        pass\n",
    "runaway",
)
HOG = main_function("def hog():\n    return len(bytearray(10**9))\n", "hog")
SETTINGS_SEEN = main_function(
    "def seen(secret):\n"
    "    import os\n"
    "    with open('/proc/self/environ', 'rb') as f:\n"
    "        initial = f.read()\n"
    "    names = sorted(k for k in os.environ if k.startswith('TABPY_'))\n"
    "    return [names, secret.encode() in initial, 'PYTHONPATH' in os.environ]\n",
    "seen",
)
FAILS = main_function("def fails(x):\n    raise ValueError('no good: ' + str(x))\n", "fails")


@pytest.fixture(scope="module")
def six15(tmp_path_factory: pytest.TempPathFactory) -> Interpreter:
    return build_environment(tmp_path_factory.mktemp("envs") / "six15", "six==1.15.0")


def other_key(interpreter: Interpreter, letter: str) -> Interpreter:
    """The same environment under another key: a second environment for pool bookkeeping."""
    return Interpreter(key=letter * 64, python=interpreter.python)


@contextlib.asynccontextmanager
async def started_pools(
    limits: EnvPoolLimits | None = None, **options: Any
) -> AsyncIterator[PoolSet]:
    default = WorkerPool(PoolOptions(**{"size": 1, "timeout": 30.0, **options}))
    pools = PoolSet(default, limits)
    pools.start()
    try:
        await wait_until(lambda: default.ready_workers == 1, "the default worker")
        yield pools
    finally:
        await pools.close()


def in_env(name: str, function: Any, interpreter: Interpreter | None) -> Deployed:
    return dataclasses.replace(deployed(name, function), interpreter=interpreter)


def call(endpoint: Deployed, *args: Any, principal: str = "") -> Job:
    body = json.dumps({"data": list(args)}).encode()
    return Job(QueryMeta(endpoint.endpoint), [body], endpoint.artifact, principal)


async def response(pools: PoolSet, endpoint: Deployed, *args: Any, principal: str = "") -> Any:
    reply = await pools.submit(call(endpoint, *args, principal=principal), endpoint.interpreter)
    return json.loads(reply.body)["response"]


def test_an_endpoint_runs_in_its_environment_whose_pool_starts_on_the_first_call(
    six15: Interpreter,
) -> None:
    async def scenario() -> None:
        async with started_pools() as pools:
            six = in_env("six", SIX_VERSION, six15)
            pools.directory.publish({"six": six})
            assert pools.running == 0  # nothing starts before a call
            started = time.monotonic()
            assert await response(pools, six) == "1.15.0"
            cold = time.monotonic() - started
            assert pools.running == 1
            assert cold < 15, f"a cold environment pool took {cold:.1f} s"
            # The same object in the server's own environment sees that environment's six.
            if default_six() is None:
                with pytest.raises(ScriptFailed) as failed:
                    await pools.submit(call(six), None)
                assert "No module named 'six'" in failed.value.info["error"]
            else:
                reply = await pools.submit(call(six), None)
                assert json.loads(reply.body)["response"] == default_six()

    run(scenario)


def test_an_idle_pool_stops_with_its_template_and_starts_again(six15: Interpreter) -> None:
    async def scenario() -> None:
        async with started_pools(EnvPoolLimits(idle_seconds=0.3)) as pools:
            pid = in_env("pid", PID, six15)
            pools.directory.publish({"pid": pid})
            worker = await response(pools, pid)
            launcher = pools.pool_for(six15).launcher
            assert isinstance(launcher, TemplateLauncher)
            template = launcher.pid
            assert template is not None
            await wait_until(lambda: pools.running == 0, "the idle pool to stop", 10)
            assert pools.stops == {"idle": 1}
            await wait_until(lambda: not _alive(worker), "its worker to end", 10)
            await wait_until(lambda: not _alive(template), "its template to end", 10)
            assert await response(pools, pid) != worker  # a new pool serves the next call

    run(scenario)


def test_the_least_recently_used_idle_pool_makes_room(six15: Interpreter) -> None:
    a, b, c = (other_key(six15, letter) for letter in "abc")

    async def scenario() -> None:
        async with started_pools(EnvPoolLimits(max_pools=2)) as pools:
            endpoints = {
                name: in_env(name, PID, env) for name, env in zip("abc", (a, b, c), strict=True)
            }
            pools.directory.publish(endpoints)
            for name in "aba":  # b is now the least recently used
                await response(pools, endpoints[name])
            assert pools.running == 2
            await response(pools, endpoints["c"])
            labels = [label for label, _ in pools.environments()]
            assert labels == ["default", a.label, c.label]
            assert pools.stops == {"evicted": 1}

    run(scenario)


def test_a_busy_pool_is_not_evicted(six15: Interpreter) -> None:
    a, b = other_key(six15, "a"), other_key(six15, "b")
    slow = main_function(
        "def slow():\n    import time\n    time.sleep(1.5)\n    return 1\n", "slow"
    )

    async def scenario() -> None:
        async with started_pools(EnvPoolLimits(max_pools=1)) as pools:
            busy, other = in_env("busy", slow, a), in_env("other", PID, b)
            pools.directory.publish({"busy": busy, "other": other})
            running = asyncio.ensure_future(response(pools, busy))
            await wait_until(lambda: pools.pool_for(a).in_flight == 1, "the slow call")
            await response(pools, other)  # one more pool than the cap, for a while
            assert await running == 1
            assert pools.stops == {}

    run(scenario)


def test_a_crash_in_an_environment_pool_is_contained_and_replaced(six15: Interpreter) -> None:
    async def scenario() -> None:
        async with started_pools() as pools:
            crash, pid = in_env("crash", CRASH, six15), in_env("pid", PID, six15)
            pools.directory.publish({"crash": crash, "pid": pid})
            with pytest.raises(WorkerCrashed) as crashed:
                await response(pools, crash)
            assert "died (it was killed by signal SIGKILL)" in crashed.value.info
            assert pools.restarts()[six15.label] == {RestartCause.CRASH: 1}
            assert pools.default.restarts == {}
            assert isinstance(await response(pools, pid), int)

    run(scenario)


def test_a_runaway_in_an_environment_pool_is_killed_with_what_it_started(
    six15: Interpreter, tmp_path: Path
) -> None:
    marker = tmp_path / "grandchild.pid"

    async def scenario() -> None:
        async with started_pools(timeout=2.0, timeout_text="2") as pools:
            runaway = in_env("runaway", RUNAWAY, six15)
            pools.directory.publish({"runaway": runaway})
            with pytest.raises(ScriptTimeout, match="Timeout is set to 2 s"):
                await response(pools, runaway, str(marker))
            grandchild = int(marker.read_text())
            await wait_until(lambda: not _alive(grandchild), "the script's own child to die", 10)
            assert pools.restarts()[six15.label] == {RestartCause.TIMEOUT: 1}

    run(scenario)


def test_the_memory_limit_holds_in_an_environment_pool(six15: Interpreter) -> None:
    async def scenario() -> None:
        async with started_pools(memory_limit_mb=100) as pools:
            hog = in_env("hog", HOG, six15)
            pools.directory.publish({"hog": hog})
            with pytest.raises(MemoryLimitExceeded) as exceeded:
                await response(pools, hog)
            assert "TABPY_WORKER_MEMORY_LIMIT_MB" in exceeded.value.info
            assert pools.restarts()[six15.label] == {RestartCause.MEMORY: 1}

    run(scenario)


def test_environment_workers_see_no_server_settings(
    six15: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sqlite:////nowhere/test-env-pools-secret.db"
    monkeypatch.setenv("TABPY_REGISTRY_URL", secret)
    monkeypatch.setenv("PYTHONPATH", "/nowhere/server-packages")

    async def scenario() -> None:
        async with started_pools() as pools:
            seen = in_env("seen", SETTINGS_SEEN, six15)
            pools.directory.publish({"seen": seen})
            assert await response(pools, seen, secret) == [[], False, False]
        assert os.environ["TABPY_REGISTRY_URL"] == secret

    run(scenario)


def test_callers_are_isolated_in_an_environment_pool(six15: Interpreter) -> None:
    async def scenario() -> None:
        async with started_pools(isolate_callers=True) as pools:
            pid = in_env("pid", PID, six15)
            pools.directory.publish({"pid": pid})
            alice = await response(pools, pid, principal="basic:alice")
            bob = await response(pools, pid, principal="basic:bob")
            assert alice != bob
            assert pools.restarts()[six15.label][RestartCause.RECYCLED] == 1

    run(scenario)


def test_tabpy_query_crosses_environments_both_ways(six15: Interpreter) -> None:
    async def scenario() -> None:
        async with started_pools() as pools:
            pools.directory.publish(
                {
                    "six": in_env("six", SIX_VERSION, six15),
                    "double": in_env("double", lambda x: 2 * x, None),
                    "fails": in_env("fails", FAILS, six15),
                }
            )
            # From a default-environment script to an environment's endpoint.
            script = "return [tabpy.query('six', 1)['response'], tabpy.query('double', 2)]"
            reply = await pools.default.submit(evaluate_job(script))
            version, doubled = json.loads(reply.body)
            assert version == "1.15.0"
            assert (doubled["response"], doubled["model"], doubled["version"]) == (4, "double", 1)
            # From a script in the environment's pool back to the default one.
            back = await pools.submit(evaluate_job("return tabpy.query('double', 3)"), six15)
            assert json.loads(back.body)["response"] == 6
            # The target's failure comes back as the envelope a /query caller would get.
            envelope = await pools.default.submit(evaluate_job("return tabpy.query('fails', 7)"))
            assert json.loads(envelope.body) == {
                "message": "Error querying function 'fails'",
                "info": {"uri": "fails", "error": "ValueError : no good: 7", "type": "QueryFailed"},
            }
            with pytest.raises(QueryUnanswered) as unanswered:
                await pools.default.submit(
                    evaluate_job("return tabpy.query('fails', 7)['response']")
                )
            assert "The endpoint said: ValueError : no good: 7" in unanswered.value.info
            mixed = await pools.default.submit(evaluate_job("return tabpy.query('six', 1, x=2)"))
            assert (
                "either positional or keyword arguments" in json.loads(mixed.body)["info"]["error"]
            )

    run(scenario)


def test_a_cross_environment_query_has_its_callers_rights(six15: Interpreter) -> None:
    def only_double(name: str) -> Refused | None:
        return None if name == "double" else Refused(f"may not query {name}", "Forbidden request.")

    async def scenario() -> None:
        async with started_pools() as pools:
            pools.directory.publish({"six": in_env("six", SIX_VERSION, six15)})
            job = dataclasses.replace(
                evaluate_job("return tabpy.query('six')"), may_query=only_double
            )
            reply = await pools.default.submit(job)
            assert json.loads(reply.body) == {
                "message": "may not query six",
                "info": "Forbidden request.",
            }
            assert pools.running == 0  # refused before anything started

    run(scenario)


def test_metrics_label_worker_metrics_by_environment(six15: Interpreter) -> None:
    async def scenario() -> None:
        async with started_pools() as pools:
            crash, pid = in_env("crash", CRASH, six15), in_env("pid", PID, six15)
            pools.directory.publish({"crash": crash, "pid": pid})
            with pytest.raises(WorkerCrashed):
                await response(pools, crash)
            await response(pools, pid)
            metrics = Metrics()
            metrics.watch(lambda: pools, lambda: None)
            value = metrics.registry.get_sample_value
            env, default = {"environment": six15.label}, {"environment": "default"}
            assert value("tabpy_workers_ready", env) == 1
            assert value("tabpy_workers_ready", default) == 1
            assert value("tabpy_worker_restarts_total", {"cause": "crash", **env}) == 1
            assert value("tabpy_worker_restarts_total", {"cause": "crash", **default}) == 0
            assert value("tabpy_env_pools") == 1
            # The status page's row says the same.
            row = _environment_pools_text(SimpleNamespace(pools=pools))  # type: ignore[arg-type]
            assert row.startswith("1 running (at most 8, each stops after 300 s idle)")
            assert f"{six15.label}: 1 of 1 ready" in row

    run(scenario)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def test_a_stopped_pools_restarts_still_count(six15: Interpreter) -> None:
    async def scenario() -> None:
        async with started_pools(EnvPoolLimits(idle_seconds=0.3)) as pools:
            crash = in_env("crash", CRASH, six15)
            pools.directory.publish({"crash": crash})
            with pytest.raises(WorkerCrashed):
                await response(pools, crash)
            await wait_until(lambda: pools.running == 0, "the idle pool to stop", 10)
            assert pools.restarts()[six15.label] == {RestartCause.CRASH: 1}

    run(scenario)


def test_a_template_ends_when_its_server_dies(six15: Interpreter) -> None:
    # A stand-in server: starts a template, reports its pid, and dies without cleaning up.
    program = (
        "import os, sys\n"
        "from tabpy.runtime.template import TemplateLauncher\n"
        "launcher = TemplateLauncher(sys.argv[1])\n"
        "launcher.prepare()\n"
        "print(launcher.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, six15.python],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    template = int(done.stdout)

    async def scenario() -> None:
        await wait_until(lambda: not _alive(template), "the orphaned template to exit", 30)

    run(scenario)


def test_an_environment_whose_python_cannot_start_says_so(tmp_path: Path) -> None:
    broken = Interpreter(key="d" * 64, python=str(tmp_path / "gone" / "bin" / "python"))

    async def scenario() -> None:
        async with started_pools(timeout=2.0) as pools:
            endpoint = in_env("pid", PID, broken)
            pools.directory.publish({"pid": endpoint})
            with pytest.raises(WorkerCrashed) as crashed:
                await response(pools, endpoint)
            assert "no worker process could start" in crashed.value.info
            assert str(tmp_path / "gone") in crashed.value.info
            assert await response(pools, in_env("pid", PID, None)) > 0  # the default serves

    run(scenario)
