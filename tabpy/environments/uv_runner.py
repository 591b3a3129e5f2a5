"""Running the ``uv`` binary with a deadline and a disk budget.

uv inherits the server's environment, so the package index is whatever uv's own configuration
names (``UV_INDEX_URL``, ``UV_DEFAULT_INDEX``, ``uv.toml``); nothing here chooses one. Each run
gets its own process group, so stopping it also stops what uv started (a build backend).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tabpy.environments.environment_errors import (
    BuildFailed,
    BuildTimedOut,
    DiskLimitExceeded,
    UvMissing,
)

__all__ = ["directory_size", "find_uv", "run_uv"]

#: How often a running command's deadline and disk use are checked.
_POLL_SECONDS = 0.25
#: Disk use is measured less often: walking a large environment takes a while.
_DISK_POLL_SECONDS = 2.0
#: Most characters of uv's error output kept in a message.
_MAX_MESSAGE = 4000


def find_uv() -> str:
    """The uv binary shipped by the ``uv`` PyPI package."""
    try:
        from uv import find_uv_bin
    except ImportError:
        raise UvMissing() from None
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        raise UvMissing() from None


def run_uv(
    args: list[str],
    *,
    what: str,
    deadline: float,
    cwd: Path,
    stdin: str | None = None,
    watch: Path | None = None,
    max_bytes: int = 0,
) -> str:
    """Run ``uv args``; its stdout, or :class:`BuildFailed` quoting its stderr.

    ``deadline`` is a ``time.monotonic()`` value; ``watch`` is a folder whose size may not pass
    ``max_bytes`` (0: no limit) while the command runs.
    """
    command = [find_uv(), *args, "--color", "never"]
    if time.monotonic() >= deadline:
        raise BuildTimedOut(_timeout_message(what))
    with subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        stopped: BuildFailed | None = None
        checked_disk = time.monotonic()
        outputs: tuple[str, str] | None = None
        pending_input = stdin
        while outputs is None:
            try:
                wait = min(_POLL_SECONDS, max(deadline - time.monotonic(), 0.001))
                outputs = process.communicate(pending_input, timeout=wait)
            except subprocess.TimeoutExpired:
                pending_input = None  # communicate() already sent it
                now = time.monotonic()
                if now >= deadline:
                    stopped = BuildTimedOut(_timeout_message(what))
                elif watch is not None and max_bytes and now - checked_disk >= _DISK_POLL_SECONDS:
                    checked_disk = now
                    if directory_size(watch) > max_bytes:
                        stopped = DiskLimitExceeded(_disk_message(what, max_bytes))
                if stopped is not None:
                    _stop(process)
                    process.communicate()
                    raise stopped from None
        stdout, stderr = outputs
    if process.returncode != 0:
        raise BuildFailed(f"Environment build failed while {what}: {readable(stderr)}")
    return stdout


def readable(stderr: str) -> str:
    """uv's error output on few lines, bounded in length."""
    lines = [line.rstrip() for line in stderr.strip().splitlines() if line.strip()]
    text = "\n".join(lines) or "uv exited with an error and said nothing"
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + " ..."


def directory_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (each hard-linked file once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:  # removed while walking
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def _timeout_message(what: str) -> str:
    return (
        f"Environment build timed out while {what} (TABPY_ENV_BUILD_TIMEOUT); the installer "
        "was stopped. Raise the limit, or ask for fewer packages."
    )


def _disk_message(what: str, max_bytes: int) -> str:
    return (
        f"Environment build stopped while {what}: the environment passed "
        f"TABPY_ENV_MAX_DISK_MB ({max_bytes // (1024 * 1024)} MB); ask for fewer or smaller "
        "packages, or raise the limit."
    )


def _stop(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
