"""Start/stop the two servers under test, wait for readiness, measure process-tree memory."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpc
import procfs

TRIVIAL_READY = b'{"script": "return 1", "data": {}}'


# --- ports -------------------------------------------------------------------------------------
def free_port() -> int:
    """A port currently free on all IPv4 and IPv6 interfaces (TabPy binds to both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
            s4.bind(("0.0.0.0", 0))
            port = s4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s6.bind(("::", port))
            except OSError as e:
                if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    return port  # no IPv6 on this host
                continue
            return port
    raise RuntimeError("could not find a free port")


# --- /proc helpers (see procfs.py) -------------------------------------------------------------
process_tree = procfs.process_tree
memory_kb = procfs.memory_kb
tree_cpu_seconds = procfs.tree_cpu_seconds


def system_busy_cores(window: float = 1.0) -> float:
    """Average number of busy CPUs over `window` seconds (all processes), from /proc/stat."""

    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
        return sum(v[:8]) - idle

    tick = os.sysconf("SC_CLK_TCK")
    b0, t0 = sample(), time.monotonic()
    time.sleep(window)
    return (sample() - b0) / tick / (time.monotonic() - t0)


# --- config files ------------------------------------------------------------------------------
#: How the servers log. ``warning``: both get the same logging sections (below), so neither
#: formats a line per request and the comparison is of the servers, not of their logging.
#: ``default``: each keeps its own default (TabPy: its shipped default.conf, DEBUG to a file and
#: INFO to stdout; ours: no logging sections, one INFO line per request to stderr).
LOGGING_MODES = ("warning", "default")
WARNING_LOG_NAME = "server.log"


def warning_logging_sections(log_file: Path) -> str:
    """``logging.config.fileConfig`` sections: root at WARNING, one file handler at WARNING.

    Both servers read these from their config file (TabPy 2.16 applies the file's logging
    sections before anything else, and so do we), so the two are configured alike.
    """
    return (
        "[loggers]\nkeys=root\n\n"
        "[handlers]\nkeys=file\n\n"
        "[formatters]\nkeys=plain\n\n"
        "[logger_root]\nlevel=WARNING\nhandlers=file\n\n"
        "[handler_file]\nclass=FileHandler\nlevel=WARNING\nformatter=plain\n"
        f"args=({str(log_file)!r}, 'a')\n\n"
        "[formatter_plain]\nformat=%(asctime)s [%(levelname)s] %(name)s: %(message)s\n"
    )


def _settings_lines(settings: dict[str, str]) -> str:
    return "".join(f"{k} = {v}\n" for k, v in settings.items())


def write_ref_config(
    default_conf: Path,
    path: Path,
    workdir: Path,
    settings: dict[str, str],
    logging: str = "warning",
) -> None:
    """TabPy's shipped default.conf with our [TabPy] settings; its logging per ``logging``.

    ``warning`` replaces default.conf's logging sections with :func:`warning_logging_sections`;
    ``default`` keeps them and only moves their log file into ``workdir``.
    """
    text = default_conf.read_text()
    lines = _settings_lines(settings)
    text, n = re.subn(
        r"^\[TabPy\][ \t]*\n", lambda m: m.group(0) + lines, text, count=1, flags=re.M
    )
    if n != 1:
        text = "[TabPy]\n" + lines + "\n" + text
    if logging == "warning":
        cut = re.search(r"^\[loggers\]", text, re.M)
        if cut is None:
            raise RuntimeError(f"no [loggers] section in {default_conf}")
        text = text[: cut.start()] + warning_logging_sections(workdir / WARNING_LOG_NAME)
    elif logging == "default":
        log_file = str(workdir / "tabpy_log.log")
        text, n = re.subn(
            r"^args=\('tabpy_log\.log',", lambda m: f"args=({log_file!r},", text, flags=re.M
        )
        if n != 1:
            raise RuntimeError(f"could not relocate the log file in {default_conf}")
    else:
        raise ValueError(f"logging must be one of {LOGGING_MODES}, not {logging!r}")
    path.write_text(text)


def write_ours_config(
    path: Path, settings: dict[str, str], workdir: Path, logging: str = "warning"
) -> None:
    """A [TabPy] section with ``settings``; the WARNING logging sections unless ``default``."""
    text = "[TabPy]\n" + _settings_lines(settings)
    if logging == "warning":
        text += "\n" + warning_logging_sections(workdir / WARNING_LOG_NAME)
    elif logging != "default":
        raise ValueError(f"logging must be one of {LOGGING_MODES}, not {logging!r}")
    path.write_text(text)


# --- server process ----------------------------------------------------------------------------
class ServerError(RuntimeError):
    pass


class Server:
    """One server under test: its command, config, temp dir, process and readiness."""

    def __init__(
        self, label: str, kind: str, cmd: list[str], workdir: Path, port: int, env: dict[str, str]
    ):
        self.label, self.kind, self.cmd = label, kind, cmd
        self.workdir, self.port, self.env = workdir, port, env
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, int] = {}  # pid -> start time, of every process seen in the tree
        self._stopped = False
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self.startup_s: float | None = None

    def __repr__(self) -> str:
        return f"<Server {self.label} port={self.port} pid={self.proc and self.proc.pid}>"

    def start(self) -> None:
        self._out = open(self.stdout_path, "wb")  # noqa: SIM115 (closed in stop())
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115
        self._t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )
        self._remember([self.proc.pid])

    def log_tail(self, n: int = 30) -> str:
        out = []
        for p in (self.stdout_path, self.stderr_path, self.workdir / WARNING_LOG_NAME):
            try:
                lines = p.read_text(errors="replace").splitlines()[-n:]
            except OSError:
                continue
            if lines:
                out.append(f"--- {p.name} (last {len(lines)} lines) ---\n" + "\n".join(lines))
        return "\n".join(out)

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ServerError(
                f"{self.label} server exited with code {self.proc.returncode} during start-up\n"
                f"command: {shlex.join(self.cmd)}\n{self.log_tail()}"
            )

    def wait_ready(self, timeout: float) -> None:
        """Poll GET /info, then POST /evaluate 'return 1' until both answer 200."""
        deadline = time.monotonic() + timeout
        # /info does not depend on the workers: if it is not 200 within a minute, give up early
        info_deadline = time.monotonic() + min(timeout, 60.0)
        stage, last = "GET /info", ""
        while True:
            self._check_alive()
            self.tree()
            try:
                if stage == "GET /info":
                    r = httpc.request(self.port, "GET", "/info", timeout=5)
                    if r.status == 200:
                        stage = "POST /evaluate"
                        continue
                else:
                    r = httpc.request(self.port, "POST", "/evaluate", TRIVIAL_READY, timeout=10)
                    if r.status == 200 and r.body.strip() == b"1":
                        self.startup_s = time.perf_counter() - self._t0
                        return
                last = f"{r.status} {r.body[:200]!r}"
            except (OSError, httpc.HTTPError) as e:
                last = repr(e)
            now = time.monotonic()
            if now > deadline or (stage == "GET /info" and now > info_deadline):
                raise ServerError(
                    f"{self.label} server not ready after {time.perf_counter() - self._t0:.0f}s "
                    f"(stage {stage}, last: {last})\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def tree(self) -> list[int]:
        """The live process tree (server + workers); also remembered for stop()."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        pids = process_tree(self.proc.pid)
        self._remember(pids)
        return pids

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _remember(self, pids: list[int]) -> None:
        for p in pids:
            st = _start_time(p)
            if st is not None:
                self.seen.setdefault(p, st)

    def _ours(self, pid: int) -> bool:
        """pid is alive, not a zombie, and still the process we saw (not a reused pid)."""
        return _pid_alive(pid) and _start_time(pid) == self.seen.get(pid)

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the whole process tree: SIGTERM, then SIGKILL after `grace` seconds."""
        if self.proc is None or self._stopped:
            return
        self._stopped = True
        self.tree()
        pids = set(self.seen)
        pgid = self.proc.pid  # start_new_session=True: pgid == pid

        def signal_all(sig: int) -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            for p in pids:
                if self._ours(p):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(p, sig)

        if self.proc.poll() is None:
            signal_all(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        # workers may outlive the parent; give them the same grace, then kill what is left
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(self._ours(p) for p in pids - {pgid}):
            time.sleep(0.05)
        signal_all(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f:
                f.close()


def _start_time(pid: int) -> int | None:
    st = procfs.read_stat(pid)
    return None if st is None else st.starttime


def _pid_alive(pid: int) -> bool:
    st = procfs.read_stat(pid)
    return st is not None and st.state != "Z"
