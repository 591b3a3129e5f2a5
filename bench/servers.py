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


# --- /proc helpers -----------------------------------------------------------------------------
def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces/parens: fields after the last ')'
        rest = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(rest[1]), []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """pid and all its live descendants."""
    kids = _ppid_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if not os.path.exists(f"/proc/{p}"):
            continue
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def memory_kb(pids: list[int]) -> dict[str, int]:
    """Sum Pss and Rss (kB) from /proc/<pid>/smaps_rollup over pids."""
    tot = {"pss": 0, "rss": 0, "nproc": 0}
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                text = f.read()
        except OSError:
            continue
        tot["nproc"] += 1
        for key, name in (("Pss:", "pss"), ("Rss:", "rss")):
            m = re.search(rf"^{key}\s+(\d+) kB", text, re.M)
            if m:
                tot[name] += int(m.group(1))
    return tot


def tree_cpu_seconds(pids: list[int]) -> float:
    """utime+stime (seconds) summed over pids."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


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
def write_ref_config(
    default_conf: Path, path: Path, workdir: Path, settings: dict[str, str]
) -> None:
    """TabPy's shipped default.conf with our [TabPy] settings and the log file moved to workdir."""
    text = default_conf.read_text()
    lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
    text, n = re.subn(
        r"^\[TabPy\][ \t]*\n", lambda m: m.group(0) + lines, text, count=1, flags=re.M
    )
    if n != 1:
        text = "[TabPy]\n" + lines + "\n" + text
    log_file = str(workdir / "tabpy_log.log")
    text, n = re.subn(
        r"^args=\('tabpy_log\.log',", lambda m: f"args=({log_file!r},", text, flags=re.M
    )
    if n != 1:
        raise RuntimeError(f"could not relocate the log file in {default_conf}")
    path.write_text(text)


def write_ours_config(path: Path, settings: dict[str, str]) -> None:
    path.write_text("[TabPy]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))


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
        for p in (self.stdout_path, self.stderr_path):
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
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"
