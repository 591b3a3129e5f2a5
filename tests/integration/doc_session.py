"""Running a document's commands as written: code blocks, one shell, expected output.

A page is split into :class:`Block` objects (fenced code with its language). A
:class:`ShellSession` is one ``bash`` process that runs ``sh`` blocks in order, so ``cd``,
``export`` and ``. venv/bin/activate`` carry over from block to block as they do in a reader's
terminal. Each block is written to a file and sourced with stdin from ``/dev/null``, so a command
that reads its input can never eat the next block. A failing command stops the shell
(``set -e``), which fails the test with everything printed so far.

Servers are the one exception to "in order, in the foreground": :meth:`ShellSession.start_server`
runs a block in its own session in the background, waits for the port to accept connections and
:meth:`ShellSession.stop_server` sends SIGINT to its process group, as Ctrl+C in a terminal does.

Expected output uses ``...`` for "any text"; each expected line must match a whole line of the
output, in order, other lines in between allowed. Nothing here sleeps to synchronise: waits poll
a condition until a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<language>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)
BLOCK_TIMEOUT = 120.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# The server writes its log asynchronously: a block that reads the log may run again until then.
LOG_SETTLE_TIMEOUT = 15.0
_END = "@@END@@"


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language (``""`` if none) and its text."""

    language: str
    text: str
    offset: int  # where it starts in the page, for error messages

    def replace(self, old: str, new: str) -> Block:
        return Block(self.language, self.text.replace(old, new), self.offset)


def blocks(markdown: str) -> list[Block]:
    """Every fenced code block of ``markdown``, in order; a list item's indentation is removed."""
    found = []
    for match in FENCE.finditer(markdown):
        indent = match.group("indent")
        lines = match.group("body").splitlines(keepends=True)
        text = "".join(line.removeprefix(indent) for line in lines)
        found.append(Block(match.group("language"), text, match.start()))
    return found


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line), up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    start = markdown.index(heading + "\n")
    following = re.compile(rf"^#{{1,{len(level)}}} ", re.M)
    after = following.search(markdown, start + len(heading))
    return markdown[start : after.start() if after else len(markdown)]


def with_outputs(page: list[Block]) -> list[tuple[Block, Block | None]]:
    """Pair each non-``text`` block with the ``text`` block right after it, if any."""
    paired: list[tuple[Block, Block | None]] = []
    for block in page:
        if block.language == "text" and paired and paired[-1][1] is None:
            paired[-1] = (paired[-1][0], block)
        elif block.language != "text":
            paired.append((block, None))
    return paired


def output_matches(expected: str, output: str) -> bool:
    """Whether every line of ``expected`` (``...`` = anything) matches a line of ``output``."""
    lines = iter(line.rstrip() for line in output.splitlines())
    for wanted in expected.strip().splitlines():
        pattern = re.compile(".*".join(re.escape(part) for part in wanted.strip().split("...")))
        if not any(pattern.fullmatch(line.strip()) for line in lines):
            return False
    return True


class _Output:
    """Collects a pipe's lines in a thread, so that waiting for a marker can time out."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def until(self, start: int, marker: str, timeout: float) -> tuple[int, str] | None:
        """``(index of the marker line, its text)`` once a line from ``start`` begins with it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(start, len(self.lines)):
                    if self.lines[index].startswith(marker):
                        return index, self.lines[index]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return None
                self._changed.wait(min(remaining, 0.1))


class ShellSession:
    """One ``bash`` process running a document's blocks, in ``cwd`` with exactly ``env``."""

    def __init__(self, workdir: Path, cwd: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        self._count = 0
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._output = _Output(self.process.stdout)
        self._read_from = 0
        self.servers: list[int] = []
        self._send("set -e -o pipefail")

    @property
    def transcript(self) -> str:
        return "".join(self._output.lines)

    def _send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def _file(self, block: Block, suffix: str = ".sh") -> Path:
        self._count += 1
        path = self.workdir / f"block{self._count}{suffix}"
        path.write_text(block.text, encoding="utf-8")
        return path

    def _await(self, marker: str, timeout: float, what: str) -> tuple[str, str]:
        found = self._output.until(self._read_from, marker, timeout)
        if found is None:
            pytest.fail(
                f"{what} did not finish (or the shell stopped); transcript:\n"
                f"{self.transcript[-6000:]}"
            )
        index, line = found
        printed = "".join(self._output.lines[self._read_from : index])
        self._read_from = index + 1
        return printed, line[len(marker) :].strip()

    def run(self, block: Block, timeout: float = BLOCK_TIMEOUT) -> str:
        """Source ``block`` in the session; a failing command fails the test. Returns its output."""
        script = self._file(block)
        self._send(f". {shlex.quote(str(script))} < /dev/null; printf '\\n{_END} 0\\n'")
        printed, _ = self._await(_END, timeout, f"block at offset {block.offset}")
        return printed

    def run_apart(self, block: Block, timeout: float = BLOCK_TIMEOUT) -> tuple[int, str]:
        """Run ``block`` in a child shell of the session (same folder and variables).

        For blocks that only read (a log, say) and may be run again: a failure is returned as
        the exit status instead of ending the session.
        """
        script = self._file(block)
        self._send(
            f"__status=0; bash -e -o pipefail {shlex.quote(str(script))} < /dev/null "
            f"|| __status=$?; printf '\\n{_END} %s\\n' \"$__status\""
        )
        printed, status = self._await(_END, timeout, f"block at offset {block.offset}")
        return int(status), printed

    def save(self, name: str, text: str) -> None:
        """Write ``text`` to ``name`` in the session's current folder (a file the page shows)."""
        source = self._file(Block("", text, -1), ".txt")
        self.run(Block("sh", f"cp {shlex.quote(str(source))} {shlex.quote(name)}\n", -1))

    def start_server(self, block: Block, port: int, log: Path) -> int:
        """Run ``block`` in the background as its own process group; wait until ``port`` accepts.

        Returns the process group id. Any server already started is stopped first, as a reader
        would stop it with Ctrl+C before starting the next one.
        """
        for pgid in self.servers:
            self.stop_server(pgid)
        script = self._file(block)
        self._send(
            f"setsid bash {shlex.quote(str(script))} < /dev/null > {shlex.quote(str(log))} 2>&1 "
            f"& printf '\\n{_END} %s\\n' \"$!\""
        )
        _, pid_text = self._await(_END, 10.0, "starting a server")
        pgid = int(pid_text)
        self.servers.append(pgid)
        deadline = time.monotonic() + START_TIMEOUT
        while not _ready(port):
            if not _group_alive(pgid) or time.monotonic() > deadline:
                text = log.read_text(errors="replace") if log.exists() else ""
                pytest.fail(f"the server block at offset {block.offset} did not start:\n{text}")
            time.sleep(0.2)  # each probe is an access-log line: keep them few
        return pgid

    def stop_server(self, pgid: int) -> None:
        """SIGINT to the server's process group (Ctrl+C), then wait for all of it to exit."""
        if pgid in self.servers:
            self.servers.remove(pgid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(pgid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                pytest.fail(f"the server (process group {pgid}) did not stop on SIGINT")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every server and the shell; kill whatever is left of them."""
        for pgid in list(self.servers):
            with contextlib.suppress(Exception):
                self.stop_server(pgid)
        for pgid in [*self.servers, self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)


def _ready(port: int) -> bool:
    """True once the server on ``port`` answers ``/ready`` with 200 (a worker is up).

    Needs ``TABPY_HEALTH_CHECKS_PUBLIC=true`` in the session. Waiting for a worker, not just the
    port, matters because a reader never stops a server within a second of starting it, while
    a test would, and Ctrl+C during the worker pool's start-up is a different story.
    """
    with socket.socket() as probe:
        probe.settimeout(1.0)
        if probe.connect_ex(("127.0.0.1", port)) != 0:
            return False
    # HTTPS first: a TLS hello to a plain HTTP port is harmless, while plain HTTP sent to an
    # HTTPS port is logged as a client mistake, which the page may be looking for.
    for scheme in ("https", "http"):
        try:
            reply = httpx.get(
                f"{scheme}://127.0.0.1:{port}/ready", verify=False, timeout=5.0, trust_env=False
            )
        except httpx.HTTPError:
            continue
        return reply.status_code == 200
    return False


def _group_alive(pgid: int) -> bool:
    """True while process ``pgid`` or any process in its group is running (zombies excluded).

    The leader counts on its own because, right after ``&``, ``setsid`` may not have made its
    group yet.
    """
    for stat in [Path(f"/proc/{pgid}/stat"), *Path("/proc").glob("[0-9]*/stat")]:
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        leader = stat.parent.name == str(pgid)
        if len(fields) > 2 and (leader or fields[2] == str(pgid)) and fields[0] != "Z":
            return True
    return False


def without_proxy_for_localhost(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with this machine exempt from any HTTP proxy it names (curl and httpx read it)."""
    local = "localhost,127.0.0.1,::1"
    updated = dict(env)
    for name in ("no_proxy", "NO_PROXY"):
        updated[name] = f"{env[name]},{local}" if env.get(name) else local
    return updated


def free_port() -> int:
    """A port that was free a moment ago, for a page that names the default port in commands.

    Used only where the server cannot be told to pick one itself; the small window in which
    another program could take it is accepted there.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def copy_checkout(source: Path, destination: Path) -> Path:
    """Copy the files git tracks in ``source`` (the checkout under test) to ``destination``.

    Commands that install "from a checkout" run in the copy, so that the build's leftovers
    (``build/``, ``*.egg-info``) never land in the real one.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        path = source / name
        if path.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return destination


def index_problem(python: str) -> str | None:
    """None when pip can reach a package index, else why not (for a skip message)."""
    try:
        probe = subprocess.run(
            [
                python,
                "-m",
                "pip",
                "index",
                "versions",
                "pip",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--timeout",
                "20",
                "--retries",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if probe.returncode != 0:
        return (probe.stderr or probe.stdout).strip()[-300:] or f"exit {probe.returncode}"
    return None
