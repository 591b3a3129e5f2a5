"""Start-up, shutdown on a signal, and the command line: configuration errors, usage and help."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from live_server import ServerProcess, descendants, pid_alive, run_tabpy, wait_for, write_config

USAGE = "Usage:\n  tabpy [-h] | [--help]\n  tabpy [--config <CONFIG>] [--disable-auth-warning]\n"

Launch = Callable[..., ServerProcess]


# --- start-up ------------------------------------------------------------------------------------


def test_request_right_after_listening_waits_for_workers(launch: Launch) -> None:
    server = launch({"TABPY_WORKERS": "1"})  # returns as soon as the port is logged

    response = server.evaluate("return 42")

    assert response.status_code == 200
    assert response.content == b"42"


def test_no_prompt_without_terminal(launch: Launch) -> None:
    """Without --disable-auth-warning and with stdin not a terminal, warn and start anyway."""
    server = launch(disable_auth_warning=False)

    assert server.http.get("/info").status_code == 200
    assert re.search(r"\[WARNING\].*Authentication is not enabled", server.stderr.text)
    assert "Do you wish to proceed" not in server.stdout.text


# --- shutdown ------------------------------------------------------------------------------------

# Runs until the test creates the release file, so the signal surely arrives mid-request.
BLOCKING_SCRIPT = """\
import os, pathlib, time
pathlib.Path(_arg1).touch()
deadline = time.monotonic() + 30
while not pathlib.Path(_arg2).exists() and time.monotonic() < deadline:
    time.sleep(0.01)
return os.getpid()
"""
SHUTDOWN_LINE = re.compile(r"Exiting on signal \d+")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_finishes_requests_then_exits_0(
    launch: Launch, tmp_path: Path, signum: signal.Signals
) -> None:
    server = launch({"TABPY_WORKERS": "2"})
    started, release = tmp_path / "started", tmp_path / "release"

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            server.evaluate, BLOCKING_SCRIPT, {"_arg1": str(started), "_arg2": str(release)}
        )
        wait_for(started.exists, timeout=30, what="the script to start")
        idle_worker = server.worker_pid()  # the other worker, while the first one is busy
        children = descendants(server.pid)
        server.send_signal(signum)
        assert server.stderr.wait_for(SHUTDOWN_LINE, timeout=10), server.stderr.text
        release.touch()
        response = running.result()

    assert response.status_code == 200
    busy_worker = int(response.content)
    assert server.wait() == 0
    assert {busy_worker, idle_worker} <= set(children)
    wait_for(
        lambda: not any(pid_alive(pid) for pid in children),
        timeout=10,
        what=f"the server's child processes {children} to exit",
    )


# --- start-up errors -----------------------------------------------------------------------------


def run_with_settings(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run tabpy with a config file holding ``settings`` (it is expected to exit)."""
    config = write_config(tmp_path, {"TABPY_STATE_PATH": str(tmp_path), **settings})
    return run_tabpy("--config", str(config), "--disable-auth-warning")


@pytest.mark.parametrize(
    ("key", "value"),
    [("TABPY_PORT", "70000"), ("TABPY_EVALUATE_TIMEOUT", "abc")],
)
def test_bad_value_is_one_line_without_traceback(tmp_path: Path, key: str, value: str) -> None:
    result = run_with_settings(tmp_path, **{key: value})

    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert key in result.stderr
    assert value in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_fails_before_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = run_with_settings(tmp_path, TABPY_PORT=str(port), TABPY_WORKERS="1")

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("tabpy: ")]
    assert errors == [
        f"tabpy: TABPY_PORT = {port}: the port is already in use on 0.0.0.0 (by another tabpy "
        f"or TabPy?): stop that program (ss -ltnp | grep :{port} shows it) or set TABPY_PORT to "
        "a free port."
    ], result.stderr
    assert "startup complete" not in result.stderr
    assert "Web service listening" not in result.stderr
    assert "Traceback" not in result.stderr


def test_misspelt_key_suggests_the_right_one(tmp_path: Path) -> None:
    result = run_with_settings(tmp_path, TABPY_PROT="9000")

    assert result.returncode == 1
    assert "did you mean TABPY_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"

    result = run_tabpy("--config", str(missing), "--disable-auth-warning")

    assert result.returncode == 1
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args", [["--bogus"], ["--version"], ["extra"], ["--config"]], ids=" ".join
)
def test_usage_error_prints_usage_block_and_exits_1(args: list[str]) -> None:
    result = run_tabpy(*args)

    assert result.returncode == 1
    assert result.stderr == USAGE
    assert result.stdout == ""


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_goes_to_stdout_and_exits_0(flag: str) -> None:
    result = run_tabpy(flag)

    assert result.returncode == 0
    assert result.stdout.startswith("TabPy Server.\n\n" + USAGE)
    assert "Options:" in result.stdout
    assert result.stderr == ""
