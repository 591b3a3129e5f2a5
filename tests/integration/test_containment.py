"""Everything a script starts dies with its worker, whichever containment is active.

A child started in its own session (``start_new_session=True``) escapes a process-group kill,
and a grandchild whose parent exits at once is reparented away from the worker. Both must be
gone after the script times out (the worker is killed) and after a worker is recycled for
another caller. Each mechanism is tested: ``subreaper`` everywhere, ``cgroup`` where the
machine has a writable cgroup v2 hierarchy.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import ServerProcess, pid_alive, running_server, wait_for
from security_support import password_line

from tabpy.runtime.containment import ContainmentUnavailable, _own_cgroup
from tests.components import CGROUP, missing

#: Starts both kinds of escapee, writes their PIDs to the file _arg1 names, then (if _arg2)
#: runs until the pool kills it.
ESCAPE = """\
import subprocess, time
session = subprocess.Popen(['sleep', '300'], start_new_session=True)
orphan = subprocess.run(['sh', '-c', 'setsid sleep 300 >/dev/null 2>&1 & echo $!'],
                        capture_output=True, text=True).stdout.strip()
with open(_arg1, 'w') as f:
    f.write(f'{session.pid} {orphan}')
while _arg2:
    time.sleep(0.01)
return 1
"""


def cgroup_writable() -> bool:
    try:
        probe = _own_cgroup() / f"tabpy-probe-{os.getpid()}"
        probe.mkdir()
    except (OSError, ContainmentUnavailable):
        return False
    has_kill = (probe / "cgroup.kill").exists()
    probe.rmdir()
    return has_kill


@pytest.fixture(params=["subreaper", "cgroup"])
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "cgroup" and not cgroup_writable():
        missing(CGROUP, "could not create a sub-cgroup with cgroup.kill")
    return str(request.param)


@contextlib.contextmanager
def server_with(tmp_path: Path, mode: str, **settings: str) -> Iterator[ServerProcess]:
    config = {"TABPY_WORKERS": "1", "TABPY_WORKER_CONTAINMENT": mode, **settings}
    with running_server(tmp_path, config, client=settings_client(settings)) as server:
        yield server


def settings_client(settings: dict[str, str]) -> dict[str, object]:
    return {"auth": ("alice", "pw")} if "TABPY_PWD_FILE" in settings else {}


def escapees(path: Path) -> list[int]:
    text = wait_for(lambda: path.exists() and path.read_text().strip(), 10, "the script's PIDs")
    pids = [int(pid) for pid in text.split()]
    assert len(pids) == 2 and all(pid_alive(pid) for pid in pids), pids
    return pids


def test_a_timeout_kills_what_the_script_started(tmp_path: Path, mode: str) -> None:
    pids_file = tmp_path / "pids"
    with server_with(tmp_path / "server", mode, TABPY_EVALUATE_TIMEOUT="3") as server:
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as executor:
                pending = executor.submit(
                    server.evaluate, ESCAPE, {"_arg1": str(pids_file), "_arg2": True}
                )
                pids = escapees(pids_file)  # alive while the script runs
                reply = pending.result()
            assert reply.status_code == 408, reply.text
            for pid in pids:
                wait_for(lambda pid=pid: not pid_alive(pid), 10, f"escaped process {pid} to die")
            assert re.search(rf"Worker containment: {mode}", server.stderr.text)
            metrics = server.http.get("/metrics").text
            assert f'tabpy_worker_containment{{mechanism="{mode}"}} 1.0' in metrics
            assert f"{mode} containment" in server.http.get("/").text
        finally:
            with contextlib.suppress(Exception):
                for pid in [int(p) for p in pids_file.read_text().split()]:
                    os.kill(pid, 9)


def test_recycling_a_worker_kills_what_its_script_started(tmp_path: Path, mode: str) -> None:
    pids_file = tmp_path / "pids"
    passwords = tmp_path / "passwords.txt"
    passwords.write_text(password_line("alice", "pw") + password_line("bob", "pw"))
    with server_with(tmp_path / "server", mode, TABPY_PWD_FILE=str(passwords)) as server:
        try:
            reply = server.evaluate(ESCAPE, {"_arg1": str(pids_file), "_arg2": False})
            assert reply.status_code == 200, reply.text
            pids = escapees(pids_file)
            # bob's request needs a clean worker: alice's is recycled, with what it started.
            bob = server.http.post(
                "/evaluate", json={"script": "return 2", "data": {}}, auth=("bob", "pw")
            )
            assert bob.status_code == 200, bob.text
            for pid in pids:
                wait_for(lambda pid=pid: not pid_alive(pid), 10, f"escaped process {pid} to die")
        finally:
            with contextlib.suppress(Exception):
                for pid in [int(p) for p in pids_file.read_text().split()]:
                    os.kill(pid, 9)
