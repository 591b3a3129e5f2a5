"""Workloads with authentication on (registered by importing this module in run.py)."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import httpc
import servers
from registry import workload
from workloads import SIDES, TRIVIAL, TRIVIAL_REPLY, measure_throughput, report_throughput

USER, PASSWORD = "bench", "bench-P@ssw0rd"
AUTHORIZATION = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
READY_BODY = b'{"script": "return 1", "data": {}}'


def _legacy_hash(user: str, password: str) -> str:
    """TabPy's own hash (PBKDF2-SHA512, 10 000 rounds), so both servers read the same file."""
    import hashlib

    salt = f"_$salt@tabpy:{user.lower()}$_".encode()
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 10000).hex()


def _with_password_file(old: servers.Server, pwd_file: Path) -> servers.Server:
    """A copy of ``old`` (same port, command and environment) with TABPY_PWD_FILE set."""
    workdir = old.workdir.parent / f"{old.workdir.name}-basic-auth"
    workdir.mkdir()
    cmd = list(old.cmd)
    at = cmd.index("--config") + 1
    text = Path(cmd[at]).read_text()
    text, n = re.subn(
        r"^\[TabPy\][ \t]*\n",
        lambda m: m.group(0) + f"TABPY_PWD_FILE = {pwd_file}\n",
        text,
        count=1,
        flags=re.M,
    )
    if n != 1:
        raise RuntimeError(f"no [TabPy] section in {cmd[at]}")
    config = workdir / "tabpy.conf"
    config.write_text(text)
    cmd[at] = str(config)
    return servers.Server(old.label, old.kind, cmd, workdir, old.port, old.env)


def _wait_ready(srv: servers.Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        srv._check_alive()
        try:
            with httpc.Connection("127.0.0.1", srv.port, timeout=10) as conn:
                r = conn.request("POST", "/evaluate", READY_BODY, {"Authorization": AUTHORIZATION})
            if r.status == 200 and r.body.strip() == b"1":
                return
            last = f"{r.status} {r.body[:200]!r}"
        except (OSError, httpc.HTTPError) as e:
            last = repr(e)
        time.sleep(0.1)
    raise servers.ServerError(f"{srv.label} not ready with Basic auth (last: {last})")


# A profile of its own: this workload restarts its pair with a password file.
@workload("trivial-basic-auth", order=15, profile={"TABPY_LOG_DETAILS": "false"})
def trivial_basic_auth(ctx):
    """Throughput of a tiny /evaluate with Basic auth on, 16 keep-alive connections."""
    headers = {"Authorization": AUTHORIZATION}
    started = []
    try:
        for side in SIDES:
            old = ctx.servers[side]
            pwd_file = old.workdir.parent / f"{side}-passwords.txt"
            pwd_file.write_text(f"{USER} {_legacy_hash(USER, PASSWORD)}\n")
            old.stop()
            srv = _with_password_file(old, pwd_file)
            srv.start()
            started.append(srv)
            _wait_ready(srv, 120)
            ctx.servers[side] = srv
        for side in SIDES:
            srv = ctx.servers[side]
            unauthorized = httpc.request(srv.port, "POST", "/evaluate", TRIVIAL, timeout=10)
            if unauthorized.status != 401:
                raise AssertionError(f"{side}: no credentials answered {unauthorized.status}")
        res = measure_throughput(
            ctx, "trivial-basic-auth", "/evaluate", TRIVIAL, TRIVIAL_REPLY, headers
        )
    finally:
        for srv in started:
            srv.stop()
    report_throughput(ctx, res, 10, "0 (200 [4, 1, 8])", " (Basic auth)", p99=False)
