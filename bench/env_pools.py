"""Per-endpoint environment pools: cold start of an idle pool, and per-call overhead.

    python bench/env_pools.py              # builds bench/.work/envs/small with uv once
    python bench/env_pools.py --calls 5000

Measured in one process on the server's own pool machinery (``PoolSet``), not over HTTP: the
HTTP part of a ``/query`` is the same whichever pool runs it, so leaving it out makes the
overhead ratio stricter, not looser. Two figures:

* ``cold start``: the first call to an environment whose pool has stopped (idle), until its
  reply: the template starts in the environment's python, imports the worker runtime, forks a
  worker, which loads the endpoint's object and answers. Target: under 1 s for a small
  environment (six plus the runtime's cloudpickle and orjson).
* ``overhead``: trivial ``/query`` jobs (``lambda x: x``) one after another, in the default
  pool and in an environment pool of the same size; median latency and the ratio. Target: the
  environment pool at most 10% slower.

``--http`` measures the same two figures over HTTP instead, on a real server (started on a
free port with a fresh state path, one worker per pool): ``POST /query`` of a trivial endpoint
deployed with ``requirements`` (so it runs in its environment's pool) against the same
endpoint deployed without (the default pool), over one keep-alive connection, alternating
blocks; and the first ``/query`` after the environment's pool stopped idle
(``TABPY_ENV_IDLE_SECONDS``), which starts its template and worker on the request path.

    python bench/env_pools.py --http [--calls 2000] [--colds 5]

Needs uv (``pip install uv``) and a package index the first time (uv caches afterwards).
Neither mode writes bench/RESULTS.md; copy the table there by hand if it is worth keeping.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tabpy.runtime.directory import Deployed  # noqa: E402
from tabpy.runtime.environments import (  # noqa: E402
    WORKER_RUNTIME_REQUIREMENTS,
    Interpreter,
    install_worker_runtime,
)
from tabpy.runtime.pool import PoolOptions, WorkerPool  # noqa: E402
from tabpy.runtime.pools import EnvPoolLimits, PoolSet  # noqa: E402
from tabpy.runtime.protocol import Artifact, EndpointRef, Job, QueryMeta  # noqa: E402

ENV_DIR = ROOT / "bench" / ".work" / "envs" / "small"
REQUIREMENTS = ("six==1.16.0",)
BODY = b'{"data": [1]}'


def build() -> Interpreter:
    from uv import find_uv_bin

    uv = str(find_uv_bin())
    python = ENV_DIR / "bin" / "python"
    if not python.exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(ENV_DIR)], check=True)
        packages = [*WORKER_RUNTIME_REQUIREMENTS, *REQUIREMENTS]
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *packages], check=True)
    install_worker_runtime(str(python))
    return Interpreter(hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest(), str(python))


def endpoint(interpreter: Interpreter | None) -> Deployed:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def echo(x):\n    return x\n", namespace)  # by value, as a client's __main__
    data = cloudpickle.dumps(namespace["echo"])
    sha256 = hashlib.sha256(data).hexdigest()
    ref = EndpointRef("echo", 1, "model", sha256)
    return Deployed(ref, Artifact(sha256, data), interpreter)


async def call(pools: PoolSet, deployed: Deployed) -> float:
    job = Job(QueryMeta(deployed.endpoint), [BODY], deployed.artifact)
    started = time.perf_counter()
    reply = await pools.submit(job, deployed.interpreter)
    elapsed = time.perf_counter() - started
    assert json.loads(reply.body)["response"] == 1, reply
    return elapsed


async def measure(interpreter: Interpreter, calls: int, colds: int) -> dict[str, Any]:
    default = WorkerPool(PoolOptions(size=1, timeout=60.0))
    pools = PoolSet(default, EnvPoolLimits(size=1, idle_seconds=0.5))
    pools.start()
    try:
        in_default, in_env = endpoint(None), endpoint(interpreter)
        await wait(lambda: default.ready_workers == 1)
        cold: list[float] = []
        for _ in range(colds):
            await wait(lambda: pools.running == 0)
            cold.append(await call(pools, in_env))
        # Alternate blocks so that machine noise falls on both sides alike.
        default_times: list[float] = []
        env_times: list[float] = []
        block = max(calls // 10, 1)
        for _ in range(10):
            default_times += [await call(pools, in_default) for _ in range(block)]
            env_times += [await call(pools, in_env) for _ in range(block)]
        return {"cold": cold, "default": default_times, "env": env_times}
    finally:
        await pools.close()


async def wait(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the pools did not reach the expected state")
        await asyncio.sleep(0.01)


#: Seconds without a job before an environment's pool stops, on the ``--http`` server.
HTTP_IDLE_SECONDS = 1.0


def measure_http(calls: int, colds: int) -> dict[str, Any]:
    """The same figures through a real server's ``/query`` (see the module's docstring)."""
    import tempfile

    import httpx
    from environments import server  # bench/environments.py, beside this file
    from uv import find_uv_bin

    from tabpy.tabpy_tools.client import Client

    uv_cache = subprocess.run(
        [str(find_uv_bin()), "cache", "dir"], check=True, capture_output=True, text=True
    ).stdout.strip()  # the warm cache: the build is not what is measured here
    settings = {
        "TABPY_WORKERS": "1",
        "TABPY_ENV_POOL_SIZE": "1",
        "TABPY_ENV_IDLE_SECONDS": str(HTTP_IDLE_SECONDS),
    }
    work = Path(tempfile.mkdtemp(prefix="tabpy-bench-envpools-"))
    with server(work / "state", Path(uv_cache), settings) as (url, _):
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec("def echo(x):\n    return x\n", namespace)  # by value, as a client's __main__
        client = Client(url, deploy_timeout=600)
        client.deploy("plain", namespace["echo"], "default pool")
        client.deploy("inenv", namespace["echo"], "env pool", requirements=list(REQUIREMENTS))
        body = {"data": {"x": 1}}
        with httpx.Client(base_url=url, timeout=60) as http:

            def query(name: str) -> float:
                started = time.perf_counter()
                reply = http.post(f"query/{name}", json=body)
                elapsed = time.perf_counter() - started
                assert reply.status_code == 200 and reply.json()["response"] == 1, reply.text
                return elapsed

            def env_pools_running() -> float:
                text = http.get("metrics").text
                found = [line for line in text.splitlines() if line.startswith("tabpy_env_pools ")]
                return float(found[0].split()[1]) if found else -1.0

            cold: list[float] = []
            for _ in range(colds):
                deadline = time.monotonic() + 60
                while env_pools_running() != 0:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the environment's pool did not stop when idle")
                    time.sleep(0.05)
                cold.append(query("inenv"))
            query("plain")
            default_times: list[float] = []
            env_times: list[float] = []
            block = max(calls // 10, 1)
            for _ in range(10):
                default_times += [query("plain") for _ in range(block)]
                env_times += [query("inenv") for _ in range(block)]
    return {"cold": cold, "default": default_times, "env": env_times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="trivial calls per pool")
    parser.add_argument("--colds", type=int, default=5, help="cold starts to time")
    parser.add_argument("--http", action="store_true", help="through a real server's /query")
    args = parser.parse_args()
    if args.http:
        result = measure_http(args.calls, args.colds)
        path = "over HTTP"
    else:
        result = asyncio.run(measure(build(), args.calls, args.colds))
        path = "pool path"
    cold = result["cold"]
    default_p50 = statistics.median(result["default"]) * 1000
    env_p50 = statistics.median(result["env"]) * 1000
    ratio = env_p50 / default_p50
    print(f"machine: {platform.machine()}, {platform.python_version()}, {len(cold)} cold starts")
    print("| workload | result | target | met |")
    print("|---|---|---|---|")
    median_cold = statistics.median(cold) * 1000
    print(
        f"| env cold start (idle pool, first call, {path}) | median {median_cold:.0f} ms,"
        f" max {max(cold) * 1000:.0f} ms | < 1000 ms | {'yes' if max(cold) < 1 else 'no'} |"
    )
    print(
        f"| env /query overhead ({path}, {len(result['env'])} calls each) | p50 env "
        f"{env_p50:.3f} ms vs default {default_p50:.3f} ms = {ratio:.2f}x | <= 1.10x | "
        f"{'yes' if ratio <= 1.10 else 'no'} |"
    )


if __name__ == "__main__":
    main()
