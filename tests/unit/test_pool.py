"""The worker pool with real worker processes, in the test process (no HTTP server)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sys

import pytest

import tabpy
from tabpy.errors import InvalidRequest, MemoryLimitExceeded, ScriptTimeout, WorkerCrashed
from tabpy.runtime.pool import PoolOptions, RestartCause, WorkerPool
from tabpy.runtime.protocol import Artifact, EvaluateMeta, Job, Outcome, TableRequest
from tabpy.runtime.runtime_errors import QUERY_FAILED_INFO, QueryUnanswered, ScriptFailed
from tabpy.runtime.template import TemplateLauncher, template_environment
from tests.unit.pool_support import (
    deployed,
    evaluate_job,
    query_job,
    run,
    started_pool,
    wait_until,
)


def test_a_result_passes_through_as_the_worker_wrote_it() -> None:
    async def scenario() -> None:
        async with started_pool() as pool:
            reply = await pool.submit(evaluate_job("return [_arg1, 'é']", {"_arg1": 1.5}))
            assert reply.outcome is Outcome.OK
            assert reply.body == b'[1.5, "\\u00e9"]'
            assert isinstance(reply.body, bytearray)  # the receive buffer itself, not a copy

    run(scenario)


def test_failures_are_raised_as_domain_errors(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with started_pool() as pool:
            with pytest.raises(InvalidRequest, match=r"^Script is empty\.$"):
                await pool.submit(Job(EvaluateMeta(), [b'{"data": {}}']))
            with pytest.raises(ScriptFailed) as failed:
                await pool.submit(evaluate_job("raise ValueError('boom')"))
            assert (failed.value.message, failed.value.info) == (
                "Error processing script",
                "ValueError : boom",
            )
            with pytest.raises(QueryUnanswered) as unanswered:
                await pool.submit(evaluate_job("return tabpy.query('nope')['response']"))
            assert unanswered.value.info.startswith(QUERY_FAILED_INFO)
            logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
            assert logged == [
                "User code failed on line 1: ValueError: boom",
                "User code failed on line 1: KeyError: 'response' "
                "(The server said: there is no endpoint named 'nope'.)",
            ]
            # The worker is still there and well.
            assert (await pool.submit(evaluate_job("return 1"))).body == b"1"
            assert sum(pool.restarts.values()) == 0

    run(scenario)


@pytest.mark.parametrize("tables", [True, False])
def test_data_path_is_a_table_request_only_when_tables_are_on(tables: bool) -> None:
    async def scenario() -> None:
        async with started_pool(table_requests=tables) as pool:
            job = evaluate_job("return 1", dataPath="stored")
            if tables:
                reply = await pool.submit(job)
                assert reply.outcome is Outcome.TABLE_REQUEST
                assert reply.table == TableRequest("return 1", "stored")
            else:
                assert (await pool.submit(job)).body == b"1"  # "data" is used, dataPath ignored

    run(scenario)


def test_timeout_kills_and_replaces_the_worker() -> None:
    async def scenario() -> None:
        async with started_pool(timeout=0.5, timeout_text="0.5") as pool:
            first = await _pid(pool)
            with pytest.raises(ScriptTimeout) as timed_out:
                await pool.submit(evaluate_job("while True: pass"))
            assert timed_out.value.message == (
                "User defined script timed out. Timeout is set to 0.5 s."
            )
            assert pool.restarts == {RestartCause.TIMEOUT: 1}
            await wait_until(lambda: pool.ready_workers == 1, "a replacement worker")
            assert await _pid(pool) != first

    run(scenario)


def test_waiting_for_a_busy_worker_counts_against_the_timeout() -> None:
    async def scenario() -> None:
        async with started_pool(timeout=0.5) as pool:
            busy = asyncio.ensure_future(pool.submit(evaluate_job("while True: pass")))
            await asyncio.sleep(0)  # let it take the only worker
            with pytest.raises(ScriptTimeout, match="Timeout is set to 0.5 s"):
                await pool.submit(evaluate_job("return 1"))
            with pytest.raises(ScriptTimeout):
                await busy

    run(scenario)


def test_a_crash_is_reported_and_the_worker_replaced() -> None:
    async def scenario() -> None:
        async with started_pool() as pool:
            with pytest.raises(WorkerCrashed) as crashed:
                await pool.submit(evaluate_job("import os\nos._exit(3)"))
            assert "died (it exited with code 3)" in crashed.value.info
            assert pool.restarts == {RestartCause.CRASH: 1}
            await wait_until(lambda: pool.ready_workers == 1, "a replacement worker")
            # An idle worker that dies is noticed and replaced too.
            os.kill(await _pid(pool), signal.SIGKILL)
            await wait_until(lambda: pool.restarts[RestartCause.CRASH] == 2, "the death noticed")
            await wait_until(lambda: pool.ready_workers == 1, "another replacement")
            assert (await pool.submit(evaluate_job("return 2"))).body == b"2"

    run(scenario)


def test_memory_limit_is_reported_and_the_worker_replaced() -> None:
    async def scenario() -> None:
        async with started_pool(memory_limit_mb=100) as pool:
            with pytest.raises(MemoryLimitExceeded) as exceeded:
                await pool.submit(evaluate_job("x = bytearray(10**9)\nreturn len(x)"))
            assert "TABPY_WORKER_MEMORY_LIMIT_MB" in exceeded.value.info
            assert pool.restarts == {RestartCause.MEMORY: 1}

    run(scenario)


def test_an_endpoint_object_is_sent_once_per_worker() -> None:
    double = deployed("double", lambda x: 2 * x)

    async def scenario() -> None:
        async with started_pool() as pool:
            reply = await pool.submit(query_job(double, {"data": [21]}))
            body = json.loads(reply.body)
            assert (body["response"], body["version"], body["model"]) == (42, 1, "double")
            # The worker holds the object now, so the pool does not send these bytes again
            # (they would not unpickle): the worker answers from its own copy.
            garbage = Artifact(double.artifact.sha256, b"not a pickle")
            reply = await pool.submit(query_job(double, {"data": {"x": 4}}, garbage))
            assert json.loads(reply.body)["response"] == 8

    run(scenario)


def test_objects_no_longer_deployed_are_forgotten() -> None:
    double = deployed("double", lambda x: 2 * x)

    async def scenario() -> None:
        async with started_pool() as pool:
            pool.directory.publish({"double": double})
            await pool.submit(query_job(double, {"data": [1]}))
            pool.directory.publish({})
            await pool.submit(evaluate_job("return 1"))  # carries the news to the worker
            # Forgotten, so the bytes are sent again, and these do not unpickle.
            garbage = Artifact(double.artifact.sha256, b"not a pickle")
            with pytest.raises(ScriptFailed) as failed:
                await pool.submit(query_job(double, {"data": [1]}, garbage))
            assert failed.value.info["error"].startswith("Load failed: UnpicklingError : ")

    run(scenario)


def test_a_script_asks_the_server_for_the_endpoint_it_queries() -> None:
    async def scenario() -> None:
        async with started_pool() as pool:
            pool.directory.publish({"double": deployed("double", lambda x: 2 * x)})
            script = "return [tabpy.query('double', _arg1)['response'], tabpy.query('double', 1)]"
            reply = await pool.submit(evaluate_job(script, {"_arg1": 21}))
            first, full = json.loads(reply.body)
            assert first == 42
            assert (full["response"], full["version"], full["model"]) == (2, 1, "double")
            missing = await pool.submit(evaluate_job("return tabpy.query('nope', 1)"))
            assert json.loads(missing.body) == {
                "message": "UnknownURI",
                "info": "Endpoint 'nope' does not exist",
            }
            # A new version is picked up at the next call, without a new worker.
            pool.directory.publish({"double": deployed("double", lambda x: 3 * x, version=2)})
            again = await pool.submit(evaluate_job("return tabpy.query('double', 2)"))
            assert (json.loads(again.body)["response"], json.loads(again.body)["version"]) == (6, 2)

    run(scenario)


def test_workers_do_not_see_the_servers_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "sqlite:////nowhere/test-pool-registry.db"
    monkeypatch.setenv("TABPY_REGISTRY_URL", url)
    monkeypatch.setenv("TABPY_PWD_FILE", "/nowhere/test-pool-passwords.txt")
    script = (
        "import os\n"
        "with open('/proc/self/environ', 'rb') as f:\n"
        "    initial = f.read()\n"
        "names = sorted(k for k in os.environ if k.startswith('TABPY_'))\n"
        "return [names, _arg1.encode() in initial]"
    )

    async def scenario() -> None:
        async with started_pool() as pool:
            reply = await pool.submit(evaluate_job(script, {"_arg1": url}))
            assert json.loads(reply.body) == [[], False]
        assert os.environ["TABPY_REGISTRY_URL"] == url  # the server keeps its own settings

    run(scenario)


def test_a_template_never_holds_the_servers_settings() -> None:
    environ = {"TABPY_PWD_FILE": "/etc/tabpy/passwords", "PYTHONPATH": "/src", "PATH": "/bin"}
    # Another environment's template: nothing that points at the server's packages either.
    assert template_environment(environ) == {"PATH": "/bin"}
    # The server's own: its packages are the server's, so PYTHONPATH stays.
    assert template_environment(environ, own=True) == {"PYTHONPATH": "/src", "PATH": "/bin"}


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        WorkerPool(PoolOptions(size=0))


async def _pid(pool: WorkerPool) -> int:
    return int((await pool.submit(evaluate_job("import os\nreturn os.getpid()"))).body)


def test_the_default_pool_forks_workers_from_a_template_of_the_servers_own_tabpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The template runs the test process's interpreter with its module search path, so its
    # workers import this very checkout of tabpy (PYTHONPATH) and the same packages.
    monkeypatch.setenv("TABPY_PWD_FILE", "/nowhere/test-pool-passwords.txt")
    script = (
        "import gc, os, sys, tabpy\n"
        "return [os.getppid(), tabpy.__file__, sys.path, sys.executable,\n"
        "        'pandas' in sys.modules, gc.get_freeze_count() > 0]"
    )

    async def scenario() -> None:
        async with started_pool() as pool:
            assert isinstance(pool.launcher, TemplateLauncher)
            template = pool.launcher.pid
            reply = await pool.submit(evaluate_job(script))
            parent, where, path, python, preloaded, frozen = json.loads(reply.body)
            assert parent == template
            assert (where, path, python) == (tabpy.__file__, sys.path, sys.executable)
            # What the template imported and froze before forking: shared, not re-imported.
            assert preloaded == (importlib.util.find_spec("pandas") is not None)
            assert frozen
            with open(f"/proc/{template}/environ", "rb") as environ:
                names = [entry.split(b"=", 1)[0] for entry in environ.read().split(b"\0")]
            assert [n for n in names if n.startswith(b"TABPY_")] == []
            assert b"PATH" in names  # the rest of the server's environment is kept

    run(scenario)
