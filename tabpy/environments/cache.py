"""The content-addressed folder of built environments under the state path.

Layout of ``<state path>/environments``::

    <key>/                        a complete environment (a virtualenv); its name is its key
    <key>/tabpy-environment.json  the completion marker, written last, before the rename
    specs/<spec id>               which key a spec resolved to, so a restart need not resolve
    .building-<key>-<pid>-<n>/    a build in progress; renamed to <key>/ when complete
    .removing-<key>-<pid>-<n>/    an environment being collected

An environment appears under its key only complete (a rename is atomic), so a reader never sees
half of one. A build killed with ``kill -9`` leaves its ``.building-`` folder behind; the next
start removes those whose process is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tabpy.environments.uv_runner import directory_size

__all__ = ["BuiltEnvironment", "EnvironmentCache", "MARKER"]

MARKER = "tabpy-environment.json"
_BUILDING = ".building-"
_REMOVING = ".removing-"


@dataclass(frozen=True)
class BuiltEnvironment:
    """A complete environment: its key, folder, python executable and size on disk."""

    key: str
    path: Path
    size: int
    created_at: float

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")


class EnvironmentCache:
    """Not locked: the manager builds one key at a time and collects between builds."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.specs = root / "specs"

    def prepare(self) -> list[str]:
        """Remove what dead builds and collections left; the names removed.

        The folders themselves are made by the first build: a server that never builds an
        environment leaves no trace in its state path.
        """
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        for entry in self.root.iterdir():
            if entry.name.startswith((_BUILDING, _REMOVING)) and not _alive(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed

    def find(self, key: str) -> BuiltEnvironment | None:
        """The complete environment ``key``, if there is one."""
        path = self.root / key
        try:
            marker = json.loads((path / MARKER).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return BuiltEnvironment(key, path, int(marker["size"]), float(marker["created_at"]))

    def all(self) -> list[BuiltEnvironment]:
        found: list[BuiltEnvironment] = []
        if not self.root.is_dir():
            return found
        for entry in sorted(self.root.iterdir()):
            if not entry.name.startswith(".") and entry.name != self.specs.name:
                built = self.find(entry.name)
                if built is not None:
                    found.append(built)
        return found

    def new_build_folder(self, key: str) -> Path:
        path = self.root / f"{_BUILDING}{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def complete(self, key: str, folder: Path, details: Mapping[str, object]) -> BuiltEnvironment:
        """Mark ``folder`` complete and move it to its key; it is the environment from now on."""
        size = directory_size(folder)
        created_at = time.time()
        marker = {**details, "key": key, "size": size, "created_at": created_at}
        (folder / MARKER).write_text(json.dumps(marker, indent=2), "utf-8")
        target = self.root / key
        try:
            os.rename(folder, target)
        except OSError:  # another process completed the same key first: keep that one
            shutil.rmtree(folder, ignore_errors=True)
            existing = self.find(key)
            if existing is None:
                raise
            return existing
        return BuiltEnvironment(key, target, size, created_at)

    def discard(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def remove(self, key: str) -> None:
        """Collect an environment: first out of sight (a rename), then off the disk."""
        path = self.root / key
        doomed = self.root / f"{_REMOVING}{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)
        for entry in self.specs.iterdir() if self.specs.is_dir() else ():
            if _read(entry) == key:
                entry.unlink(missing_ok=True)

    def key_of(self, spec_id: str) -> str | None:
        """The key ``spec_id`` resolved to when it was last built here."""
        return _read(self.specs / spec_id)

    def remember(self, spec_id: str, key: str) -> None:
        self.specs.mkdir(parents=True, exist_ok=True)
        temporary = self.specs / f".{spec_id}.{os.getpid()}"
        temporary.write_text(key, "utf-8")
        os.replace(temporary, self.specs / spec_id)


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8").strip() or None
    except OSError:
        return None


def _alive(name: str) -> bool:
    """Whether the process that named a ``.building-``/``.removing-`` folder still runs."""
    try:
        pid = int(name.rsplit("-", 2)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False  # left by an earlier process that had our pid; we have no build yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
