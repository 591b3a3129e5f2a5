#!/usr/bin/env python
"""What ``TABPY_AUTHZ = on`` costs: trivial ``/evaluate`` and ``/query`` throughput, on vs off.

Target: with authorization on, both within 5% of authorization off (on/off >= 0.95).

Two of our servers, identical but for ``TABPY_AUTHZ``, both with Basic authentication (a
password file holding one user with TabPy's own hash, as ``trivial-basic-auth`` uses). With
authorization on, the user is granted ``caller`` and ``evaluator`` by ``tabpy-user grant`` before
the server starts, and the endpoint ``add`` lists the user among its callers, so every request
goes through the role check and the callers check. Each server gets ``add`` deployed over HTTP.
The load is the harness's (16 keep-alive connections, closed loop; wrk when installed), sent to
one server at a time, alternating off/on for several rounds; the median of each is compared.

Run it on its own (it needs nothing from the reference TabPy):

    python bench/workloads_authz.py [--quick] [--rounds N] [--loadgen auto|wrk|asyncio]

or as part of the harness, where it registers ``authz-overhead``:

    python bench/run.py --only authz-overhead

Run with the project's venv interpreter; the working tree's ``tabpy`` is what gets measured
(the harness's snapshot of it when run from ``run.py``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import httpc  # noqa: E402
import loadgen  # noqa: E402
import servers  # noqa: E402
from registry import workload  # noqa: E402

USER, PASSWORD = "bench", "bench-P@ssw0rd"
HEADERS = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
EVALUATE = (
    b'{"script": "return [x + y for x, y in zip(_arg1, _arg2)]", '
    b'"data": {"_arg1": [1, 2, 3], "_arg2": [3, -1, 5]}}'
)
EVALUATE_REPLY = b"[4, 1, 8]"
QUERY = b'{"data": {"x": [1, 2, 3], "y": [4, 5, 6]}}'
QUERY_REPLY = b'"response": [5, 7, 9]'
TARGET = 0.95
CONNECTIONS = 16


def log(message: str) -> None:
    print(f"[authz {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _legacy_hash(user: str, password: str) -> str:
    """TabPy's hash (PBKDF2-SHA512, 10 000 rounds): fast to verify, the cache does the rest."""
    salt = f"_$salt@tabpy:{user.lower()}$_".encode()
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 10000).hex()


def _add_pickle() -> bytes:
    """``add`` pickled by value (defined in a ``__main__`` namespace), as a deploy script would."""
    import cloudpickle

    from tabpy.tabpy_tools.custom_query_object import CustomQueryObject

    namespace: dict = {"__name__": "__main__"}
    exec("def add(x, y):\n    return [a + b for a, b in zip(x, y)]\n", namespace)
    return cloudpickle.dumps(CustomQueryObject(query=namespace["add"], description="bench"))


class Side:
    """One of our servers, with or without authorization."""

    def __init__(self, authz: bool, workdir: Path, python: str, env: dict[str, str]) -> None:
        self.authz = authz
        self.label = "on" if authz else "off"
        self.workdir = workdir / f"authz-{self.label}"
        self.workdir.mkdir(parents=True)
        state = self.workdir / "state"
        state.mkdir()
        pwd_file = self.workdir / "passwords.txt"
        pwd_file.write_text(f"{USER} {_legacy_hash(USER, PASSWORD)}\n")
        self.port = servers.free_port()
        self.config = self.workdir / "tabpy.conf"
        settings = {
            "TABPY_PORT": str(self.port),
            "TABPY_STATE_PATH": str(state),
            "TABPY_PWD_FILE": str(pwd_file),
            "TABPY_EVALUATE_TIMEOUT": "300",
            "TABPY_LOG_DETAILS": "false",
            "TABPY_AUTHZ": "on" if authz else "off",
        }
        servers.write_ours_config(self.config, settings, self.workdir)
        self.python, self.env = python, env
        cmd = [python, "-m", "tabpy.cli.server", "--config", str(self.config)]
        self.server = servers.Server(
            f"authz-{self.label}", "ours", cmd, self.workdir, self.port, env
        )

    def start(self, timeout: float) -> None:
        if self.authz:
            for role in ("caller", "evaluator", "deployer"):
                grant = [self.python, "-m", "tabpy.cli.user", "grant", "--config", str(self.config)]
                done = subprocess.run(
                    [*grant, "-u", USER, "--role", role],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                if done.returncode != 0:
                    raise servers.ServerError(f"tabpy-user grant failed: {done.stderr}")
        self.server.start()
        self._wait_ready(timeout)
        self._deploy_add()

    def stop(self) -> None:
        self.server.stop()

    def _request(self, method: str, path: str, body: bytes | None = None) -> httpc.Response:
        with httpc.Connection("127.0.0.1", self.port, timeout=60) as conn:
            return conn.request(method, path, body, HEADERS)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self.server._check_alive()
            try:
                reply = self._request("POST", "/evaluate", EVALUATE)
                if reply.status == 200 and reply.body == EVALUATE_REPLY:
                    return
                last = f"{reply.status} {reply.body[:200]!r}"
            except (OSError, httpc.HTTPError) as error:
                last = repr(error)
            time.sleep(0.1)
        raise servers.ServerError(f"authz-{self.label} not ready (last: {last})")

    def _deploy_add(self) -> None:
        data = _add_pickle()
        sha256 = hashlib.sha256(data).hexdigest()
        upload = self._request("PUT", f"/artifacts/{sha256}", data)
        if upload.status not in (200, 201):
            raise servers.ServerError(f"upload: {upload.status} {upload.body[:200]!r}")
        body = {"name": "add", "artifact": sha256}
        if self.authz:
            body["callers"] = [USER]  # the callers check runs on every query too
        created = self._request("POST", "/endpoints", json.dumps(body).encode())
        if created.status != 201:
            raise servers.ServerError(f"deploy: {created.status} {created.body[:200]!r}")
        reply = self._request("POST", "/query/add", QUERY)
        if reply.status != 200 or QUERY_REPLY not in reply.body:
            raise servers.ServerError(f"query: {reply.status} {reply.body[:200]!r}")


def compare(
    workdir: Path,
    *,
    quick: bool,
    rounds: int,
    tool: str,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    ready_timeout: float = 180.0,
) -> dict:
    """Median requests/s per (workload, side) over ``rounds`` alternating runs."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TABPY_")}
        env["PYTHONPATH"] = str(REPO)
    duration, warm = (3.0, 1.0) if quick else (10.0, 2.0)
    sides = [Side(False, workdir, python, env), Side(True, workdir, python, env)]
    loads = {
        "evaluate": ("/evaluate", EVALUATE, EVALUATE_REPLY, False),
        "query": ("/query/add", QUERY, QUERY_REPLY, True),
    }
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        for side in sides:
            side.start(ready_timeout)
        for name, (path, body, expected, contains) in loads.items():
            for side in sides:  # warm-up, not measured
                loadgen.run(
                    side.port, path, body, expected, CONNECTIONS, warm, tool, HEADERS, contains
                )
            for number in range(rounds):
                order = sides if number % 2 == 0 else sides[::-1]
                for side in order:
                    result = loadgen.run(
                        side.port,
                        path,
                        body,
                        expected,
                        CONNECTIONS,
                        duration,
                        tool,
                        HEADERS,
                        contains,
                    )
                    runs.setdefault((name, side.label), []).append(result)
                    log(
                        f"{name} authz {side.label}: {result['rps']:.0f} req/s, "
                        f"p50 {result['p50_ms']:.2f} ms, bad {result['bad']}"
                    )
    finally:
        for side in sides:
            side.stop()
    summary = {}
    for name in loads:
        off = runs[(name, "off")]
        on = runs[(name, "on")]
        off_rps = statistics.median(r["rps"] for r in off)
        on_rps = statistics.median(r["rps"] for r in on)
        bad = sum(r["bad"] for r in off + on)
        summary[name] = {
            "off_rps": off_rps,
            "on_rps": on_rps,
            "ratio": on_rps / off_rps if off_rps else None,
            "bad": bad,
            "met": bool(off_rps) and on_rps / off_rps >= TARGET and bad == 0,
        }
    return summary


# --- the harness hook (bench/run.py imports this module) --------------------------------------


@workload("authz-overhead", order=95)
def authz_overhead(ctx):
    """/evaluate and /query throughput with TABPY_AUTHZ on vs off (ours only)."""
    ours = ctx.servers["ours"]
    python = ours.cmd[0] if ours.cmd[1:3] == ["-m", "tabpy.cli.server"] else sys.executable
    workdir = ours.workdir.parent / "authz-overhead"
    summary = compare(
        workdir,
        quick=ctx.quick,
        rounds=2 if ctx.quick else 3,
        tool=ctx.loadgen,
        python=python,
        env=dict(ours.env),
    )
    for name, row in summary.items():
        ctx.row(
            f"{name} requests/s, authz on (ours) vs off (reference column)",
            f"{row['on_rps']:.0f}",
            f"{row['off_rps']:.0f}",
            row["ratio"],
            f">= {TARGET:g}x",
            row["met"],
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs instead of 10 s")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per side")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "asyncio"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = Path(
        tempfile.mkdtemp(
            prefix="authz-", dir=BENCH / ".work" if (BENCH / ".work").is_dir() else None
        )
    )
    failed = True
    try:
        summary = compare(workdir, quick=args.quick, rounds=args.rounds, tool=args.loadgen)
        print()
        print("| workload | authz off req/s | authz on req/s | on/off | target | met |")
        print("|---|---|---|---|---|---|")
        for name, row in summary.items():
            ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "n/a"
            met = "yes" if row["met"] else "NO"
            cells = [
                name,
                f"{row['off_rps']:.0f}",
                f"{row['on_rps']:.0f}",
                ratio,
                f">= {TARGET}",
                met,
            ]
            print("| " + " | ".join(cells) + " |")
        failed = not all(row["met"] for row in summary.values())
    finally:
        if args.keep or failed:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
