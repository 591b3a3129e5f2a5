"""Worker processes: script timeouts, memory caps, crashes and running scripts in parallel.

TabPy runs scripts in threads of the server process, so a runaway script keeps running after its
408, ``sys.exit`` stops the server and two scripts never run truly in parallel. Here every script
runs in a worker process that the server kills and replaces when needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from live_server import ServerProcess, module_server, pid_alive, wait_for

ERROR = "Error processing script"


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from module_server(
        tmp_path_factory, {"TABPY_EVALUATE_TIMEOUT": "1", "TABPY_WORKERS": "2"}
    )


@pytest.fixture(scope="module")
def fragile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two workers with a small memory cap, for scripts that crash or exhaust them."""
    yield from module_server(
        tmp_path_factory, {"TABPY_WORKERS": "2", "TABPY_WORKER_MEMORY_LIMIT_MB": "200"}
    )


def evaluate_concurrently(server: ServerProcess, *calls: tuple[str, dict]) -> list[httpx.Response]:
    """Send every ``(script, data)`` at once, each on its own thread."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: server.evaluate(*call), calls))


def assert_serves(server: ServerProcess) -> None:
    """The server is still running and a trivial script answers correctly."""
    assert server.process is not None and server.process.poll() is None
    response = server.evaluate("return 42")
    assert (response.status_code, response.content) == (200, b"42")


# --- timeouts ------------------------------------------------------------------------------------


def test_runaway_script_times_out_with_exact_body(impatient_server: ServerProcess) -> None:
    response = impatient_server.evaluate("while True: pass")

    assert response.status_code == 408
    assert response.headers["content-type"] == "application/json"
    assert response.content == (
        b'{"message": "User defined script timed out. Timeout is set to 1.0 s.", "info": {}}'
    )


def test_runaway_scripts_do_not_exhaust_the_pool(impatient_server: ServerProcess) -> None:
    for _ in range(3):  # six runaways, as many at a time as there are workers
        replies = evaluate_concurrently(
            impatient_server, ("while True: pass", {}), ("while 1: 0", {})
        )
        assert [r.status_code for r in replies] == [408, 408]

    assert_serves(impatient_server)


def test_timed_out_script_is_stopped(impatient_server: ServerProcess, tmp_path: Path) -> None:
    """The worker is killed at the deadline, so the script's later side effect never happens."""
    pid_file, marker = tmp_path / "pid", tmp_path / "too-late"
    script = (
        "import os, pathlib, time\n"
        "pathlib.Path(_arg1).write_text(str(os.getpid()))\n"
        "time.sleep(3)\n"
        "pathlib.Path(_arg2).touch()\n"
    )

    response = impatient_server.evaluate(script, {"_arg1": str(pid_file), "_arg2": str(marker)})

    assert response.status_code == 408
    pid = int(pid_file.read_text())
    # A process that no longer exists cannot write the marker any more; a surviving worker
    # would stay alive (idle) and fail this wait.
    wait_for(lambda: not pid_alive(pid), timeout=10, what=f"timed-out worker {pid} to die")
    assert not marker.exists()
    assert_serves(impatient_server)


# --- memory --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    ["x = bytearray(10**9)\nreturn len(x)", "import numpy\nreturn int(numpy.ones(125_000_000)[0])"],
    ids=["bytearray", "numpy"],
)
def test_memory_cap_is_a_500_naming_the_setting(fragile_server: ServerProcess, script: str) -> None:
    response = fragile_server.evaluate(script)

    assert response.status_code == 500
    assert response.json()["message"] == ERROR
    info = response.json()["info"]
    assert "MemoryError" in info
    assert "TABPY_WORKER_MEMORY_LIMIT_MB" in info
    assert_serves(fragile_server)


# --- crashes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "expected_info"),
    [
        ("import os\nos._exit(3)", r"died.*\bcode 3\b"),
        ("import ctypes\nctypes.string_at(0)", r"died.*\bSIGSEGV\b"),
        ("import sys\nsys.exit(3)", r"^SystemExit : 3$"),
        ("raise KeyboardInterrupt", r"^KeyboardInterrupt\b"),
    ],
    ids=["os._exit", "segfault", "sys.exit", "KeyboardInterrupt"],
)
def test_script_that_ends_its_worker_is_a_500(
    fragile_server: ServerProcess, script: str, expected_info: str
) -> None:
    response = fragile_server.evaluate(script)

    assert response.status_code == 500
    assert response.json()["message"] == ERROR
    assert re.search(expected_info, response.json()["info"]), response.json()["info"]
    assert_serves(fragile_server)


# --- parallelism ---------------------------------------------------------------------------------

# Each script announces itself with a marker file, then waits for the other's. Both can only
# succeed if they run at the same time, which proves parallelism without measuring time.
RENDEZVOUS = """\
import os, pathlib, time
here = pathlib.Path(_arg1)
(here / _arg2).touch()
deadline = time.monotonic() + 20
while not (here / _arg3).exists():
    if time.monotonic() > deadline:
        raise TimeoutError('the other script never started')
    time.sleep(0.01)
return os.getpid()
"""


def test_two_workers_run_scripts_in_parallel(fragile_server: ServerProcess, tmp_path: Path) -> None:
    here = str(tmp_path)

    replies = evaluate_concurrently(
        fragile_server,
        (RENDEZVOUS, {"_arg1": here, "_arg2": "a", "_arg3": "b"}),
        (RENDEZVOUS, {"_arg1": here, "_arg2": "b", "_arg3": "a"}),
    )

    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    first, second = (int(r.content) for r in replies)
    assert first != second
