"""A throwaway PostgreSQL cluster for tests (marker ``postgres``).

The server binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<major>/bin``,
newest major first) or else from ``PATH``. The cluster lives in a temporary folder, listens only
on a Unix socket in that folder (no TCP port at all), and is owned by the ``postgres`` system user
when the tests run as root, because ``initdb`` refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.components import POSTGRES, missing, require_module

#: Where Debian installs each major version's server binaries (they are not on ``PATH``).
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin/initdb"


def _major(initdb: str) -> tuple[int, ...]:
    version = Path(initdb).parent.parent.name  # /usr/lib/postgresql/<version>/bin/initdb
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _binaries() -> Path | None:
    found = sorted(glob.glob(DEBIAN_BINARIES), key=_major)  # numerically: 15 after 9.6
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster and yield a SQLAlchemy URL for a fresh ``tabpy`` database.

    The cluster gets its own short folder under the system temp dir: pytest's
    folders are private to root, and Unix socket paths must stay short.
    """
    binaries = _binaries()
    if binaries is None:
        missing(POSTGRES, f"no initdb in {DEBIAN_BINARIES} or on PATH")
    require_module("psycopg", POSTGRES)
    directory = Path(tempfile.mkdtemp(prefix="tabpy-pg-"))
    data, socket_dir = directory / "data", directory / "socket"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        shutil.chown(socket_dir, "postgres")

    def run(program: str, *args: str) -> None:
        command = _as_owner([str(binaries / program), *args])
        subprocess.run(command, check=True, capture_output=True, text=True)

    run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust")
    options = f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}' -c fsync=off"
    run("pg_ctl", "-D", str(data), "-o", options, "-w", "-l", str(directory / "log"), "start")
    try:
        run("createdb", "-h", str(socket_dir), "-U", "postgres", "tabpy")
        yield f"postgresql+psycopg://postgres@/tabpy?host={socket_dir}"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(directory, ignore_errors=True)


class ClusterControl:
    """Stops and restarts the cluster behind a :func:`postgres_cluster` URL (an outage)."""

    def __init__(self, url: str) -> None:
        query = url.partition("?host=")[2]
        self.socket_dir = Path(query)
        self.data = self.socket_dir.parent / "data"
        binaries = _binaries()
        assert binaries is not None
        self.pg_ctl = str(binaries / "pg_ctl")

    def _run(self, *args: str) -> None:
        command = _as_owner([self.pg_ctl, "-D", str(self.data), *args])
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        self._run("-m", "fast", "-w", "stop")

    def start(self) -> None:
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -c fsync=off"
        )
        self._run("-o", options, "-w", "-l", str(self.socket_dir.parent / "log"), "start")
