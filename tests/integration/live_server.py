"""Running the real ``tabpy`` server in a subprocess, for the integration tests.

Each server gets its own config file and state directory and ``TABPY_PORT = 0``, so the OS picks
a free port, which the server logs as ``Web service listening on port <N>``. Nothing here sleeps
to synchronise: every wait polls a condition until a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

READY_LINE = re.compile(r"Web service listening on port (\d+)")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
# Generous: a cold worker pool on a busy 2-core CI machine can take a few seconds.
WARM_TIMEOUT = 30.0
HTTP_TIMEOUT = 60.0

ServerSettings = Mapping[str, str]

#: Workers of the shared ``default_server``: fixed, so that tests do not depend on the CPU count.
DEFAULT_WORKERS = 2

#: CORS values for ``state.ini`` ``[Service Info]``; the server must send them back verbatim.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "https://tableau.example.com",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
}


def state_ini(service_info: Mapping[str, str]) -> str:
    """TabPy's ``state.ini`` template with some ``[Service Info]`` values replaced."""
    values = {
        "Name": "TabPy Server",
        "Description": "",
        "Creation Time": "0",
        **dict.fromkeys(CORS_HEADERS, ""),
        **service_info,
    }
    lines = ["[Service Info]", *(f"{key} = {value}" for key, value in values.items())]
    lines += ["", "[Query Objects Service Versions]", "", "[Query Objects Docstrings]", ""]
    lines += ["[Meta]", "Revision Number = 1"]
    return "\n".join(lines) + "\n"


def envelope(message: str, info: object = None) -> bytes:
    """TabPy's error body, byte for byte (Python's JSON separators, ``{}`` for no info)."""
    return json.dumps({"message": message, "info": {} if info is None else info}).encode()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def clean_environment() -> dict[str, str]:
    """The test runner's environment without ``TABPY_*`` variables, which would override files."""
    return {name: value for name, value in os.environ.items() if not name.startswith("TABPY_")}


def write_config(directory: Path, settings: ServerSettings) -> Path:
    """Write a ``[TabPy]`` config file holding ``settings`` and return its path."""
    lines = ["[TabPy]", *(f"{key} = {value}" for key, value in settings.items())]
    path = directory / "tabpy.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_tabpy(*args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``tabpy <args>`` to completion (for the CLI paths that exit on their own)."""
    return subprocess.run(
        [sys.executable, "-m", "tabpy.cli.server", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_environment(),
    )


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a running process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, found through ``/proc``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


class _LineCollector:
    """Reads a pipe continuously in a thread, so the server never blocks on a full pipe."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """The first line matching ``pattern``, or None once the deadline passes or EOF."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if match := pattern.search(line):
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return None
                self._changed.wait(min(remaining, 0.1))

    def join(self) -> None:
        self._thread.join(timeout=STOP_TIMEOUT)


class ServerProcess:
    """One ``tabpy`` server in a subprocess, in its own directory, on an ephemeral port."""

    def __init__(
        self,
        directory: Path,
        settings: ServerSettings | None = None,
        *,
        state_ini: str | None = None,
        disable_auth_warning: bool = True,
        client: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        extra_config: str = "",
        module: str = "tabpy.cli.server",
    ) -> None:
        """``client``: extra ``httpx.Client`` arguments (``auth=``, ``verify=`` for https);
        ``env``: extra environment variables; ``extra_config``: text appended to the config
        file (for example logging sections); ``module``: what ``python -m`` runs (a test's
        wrapper around the server's command)."""
        self.state_path = (directory / "state").resolve()
        self.state_path.mkdir(parents=True, exist_ok=True)
        if state_ini is not None:
            (self.state_path / "state.ini").write_text(state_ini, encoding="utf-8")
        all_settings = {"TABPY_PORT": "0", "TABPY_STATE_PATH": str(self.state_path)}
        all_settings.update(settings or {})
        config_file = write_config(directory, all_settings)
        if extra_config:
            with config_file.open("a", encoding="utf-8") as stream:
                stream.write("\n" + extra_config)
        self.args = ["--config", str(config_file)]
        self.scheme = all_settings.get("TABPY_TRANSFER_PROTOCOL", "http").lower()
        self.client_options = dict(client or {})
        self.extra_env = dict(env or {})
        if disable_auth_warning:
            self.args.append("--disable-auth-warning")
        self.module = module
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self._client: httpx.Client | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ServerProcess:
        """Start the server and wait for its ``listening`` line (workers may still be warming)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**clean_environment(), **self.extra_env},
            start_new_session=True,  # so teardown can kill the whole group
        )
        self.stdout = _LineCollector(self.process.stdout)
        self.stderr = _LineCollector(self.process.stderr)
        ready = self.stderr.wait_for(READY_LINE, START_TIMEOUT)
        if ready is None:
            self.kill()
            pytest.fail(f"tabpy did not start; stderr:\n{self.stderr.text}")
        self.port = int(ready.group(1))
        self._client = httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT, **self.client_options)
        return self

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the server to exit on its own; returns its exit code."""
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        self.stdout.join()
        self.stderr.join()
        return code

    def kill(self) -> None:
        """Make sure nothing this server started is left running (teardown)."""
        if self._client is not None:
            self._client.close()
        if self.process is None:
            return
        tree = descendants(self.pid)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    # --- HTTP ------------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        assert self._client is not None, "server not started"
        return self._client

    def evaluate(self, script: str, data: Mapping[str, Any] | None = None) -> httpx.Response:
        """POST /evaluate with ``{"script": script, "data": data or {}}``."""
        return self.http.post("/evaluate", json={"script": script, "data": dict(data or {})})

    def wait_until_warm(self) -> ServerProcess:
        """Poll until a trivial script answers 200, i.e. a worker is ready."""
        wait_for(
            lambda: self.evaluate("return 1").status_code == 200,
            WARM_TIMEOUT,
            "a worker to answer /evaluate",
        )
        return self

    def worker_pid(self) -> int:
        """The PID of whichever worker runs the next script."""
        response = self.evaluate("import os\nreturn os.getpid()")
        assert response.status_code == 200, response.text
        return int(response.json())


@contextlib.contextmanager
def running_server(
    directory: Path,
    settings: ServerSettings | None = None,
    *,
    warm: bool = True,
    **kwargs: Any,
) -> Iterator[ServerProcess]:
    """A started server (warm unless ``warm=False``), killed with its process tree on exit."""
    server = ServerProcess(directory, settings, **kwargs)
    try:
        server.start()
        yield server.wait_until_warm() if warm else server
    finally:
        server.kill()


def module_server(
    tmp_path_factory: pytest.TempPathFactory,
    settings: ServerSettings | None = None,
    **kwargs: Any,
) -> Iterator[ServerProcess]:
    """Body of a module-scoped server fixture: ``yield from module_server(factory, {...})``."""
    with running_server(tmp_path_factory.mktemp("server"), settings, **kwargs) as server:
        yield server
