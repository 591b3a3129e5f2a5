"""Resolving a spec to a lock and building the lock into a virtualenv, with uv.

The steps, each reported to ``on_phase``: resolve the spec (with the worker runtime's own
requirements) for the server's Python into a pinned lock; key the environment by the lock and
the Python version; then, unless that key is already built, create a virtualenv from the
server's interpreter in a ``.building-`` folder, install the lock, install the worker runtime,
and move the folder to its key. Any failure removes the folder.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from tabpy.environments.cache import MARKER, BuiltEnvironment, EnvironmentCache
from tabpy.environments.environment_errors import BuildFailed, DiskLimitExceeded
from tabpy.environments.spec import EnvironmentSpec
from tabpy.environments.uv_runner import directory_size, run_uv

__all__ = [
    "BuildLimits",
    "BuildPhase",
    "Toolchain",
    "build",
    "environment_key",
    "lock_file_name",
    "resolve",
    "share",
    "spec_id",
]


class BuildPhase(str, enum.Enum):
    """Where a build is; the status page shows the value."""

    QUEUED = "queued"
    RESOLVING = "resolving requirements"
    CREATING = "creating the virtualenv"
    INSTALLING = "installing packages"
    FINISHING = "installing the worker runtime"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class BuildLimits:
    timeout: float  # seconds for the whole build
    max_bytes: int  # disk for one environment; 0: no limit


@dataclass(frozen=True)
class Toolchain:
    """What every environment is built from: the server's interpreter and worker runtime.

    ``install_runtime`` puts the worker runtime into an environment, given its python; it is
    passed in by the application's wiring (the runtime package owns the worker modules).
    """

    python: str
    python_version: str
    runtime_requirements: tuple[str, ...]
    install_runtime: Callable[[str], None]
    #: Workers run as another OS user (``TABPY_WORKER_USER``): every environment is made
    #: readable (and its folders and programs traversable) by all, writable by none but us.
    shared_with_workers: bool = False


def spec_id(spec: EnvironmentSpec, toolchain: Toolchain) -> str:
    """Names a spec for this server's Python, before it is resolved."""
    return _sha256(spec.to_text(), toolchain.python_version)


def environment_key(lock: str, python_version: str) -> str:
    """The content key: the resolved lock and the Python it was resolved for."""
    return _sha256(lock, python_version)


def build(
    spec: EnvironmentSpec,
    cache: EnvironmentCache,
    toolchain: Toolchain,
    limits: BuildLimits,
    on_phase: Callable[[BuildPhase], None],
    *,
    lock_key: Callable[[str], AbstractContextManager[object]] | None = None,
    lock: str | None = None,
) -> BuiltEnvironment:
    """Resolve and build ``spec``, or find it built; :class:`BuildFailed` says why not.

    ``lock_key(key)`` returns a context manager held while the key is built, so that two
    specs resolving to the same lock build it once. ``lock``: build this resolution of
    ``spec`` (one the fleet recorded) rather than resolving it again.
    """
    deadline = time.monotonic() + limits.timeout
    cache.root.mkdir(parents=True, exist_ok=True)
    if toolchain.shared_with_workers:
        # Traversable, not listable: a worker reaches its environment by name only.
        _add_mode(cache.root, stat.S_IXGRP | stat.S_IXOTH)
    if lock is None:
        on_phase(BuildPhase.RESOLVING)
        lock = resolve(spec, cache, toolchain, deadline)
    key = environment_key(lock, toolchain.python_version)
    with lock_key(key) if lock_key is not None else nullcontext():
        found = cache.find(key)
        if found is not None:
            return found
        return _build(key, lock, spec, cache, toolchain, limits, deadline, on_phase)


def resolve(
    spec: EnvironmentSpec, cache: EnvironmentCache, toolchain: Toolchain, deadline: float
) -> str:
    """The lock text: uv's pinned resolution, or a pylock.toml as given."""
    if spec.format == "pylock.toml":
        assert spec.lock is not None
        return spec.lock
    wanted = spec.resolver_input() + "".join(f"{r}\n" for r in toolchain.runtime_requirements)
    # From stdin, without header or annotations: the output names no temporary path, so the
    # same resolution always gives the same text, and the same key.
    return run_uv(
        ["pip", "compile", "-", "--python", toolchain.python, "--no-header", "--no-annotate",
         "--quiet"],
        what=str(BuildPhase.RESOLVING),
        deadline=deadline,
        cwd=cache.root,
        stdin=wanted,
    )  # fmt: skip


def _build(
    key: str,
    lock: str,
    spec: EnvironmentSpec,
    cache: EnvironmentCache,
    toolchain: Toolchain,
    limits: BuildLimits,
    deadline: float,
    on_phase: Callable[[BuildPhase], None],
) -> BuiltEnvironment:
    folder = cache.new_build_folder(key)
    try:
        on_phase(BuildPhase.CREATING)
        run_uv(
            ["venv", "--quiet", "--relocatable", "--no-project", "--python", toolchain.python,
             str(folder)],
            what=str(BuildPhase.CREATING),
            deadline=deadline,
            cwd=cache.root,
        )  # fmt: skip
        python = str(folder / "bin" / "python")
        lock_file = folder / lock_file_name(spec)
        lock_file.write_text(lock, "utf-8")
        on_phase(BuildPhase.INSTALLING)

        def install(*requirements: str) -> None:
            run_uv(
                ["pip", "install", "--quiet", "--python", python, *requirements],
                what=str(BuildPhase.INSTALLING),
                deadline=deadline,
                cwd=cache.root,
                watch=folder,
                max_bytes=limits.max_bytes,
            )

        install("-r", str(lock_file))
        if spec.format == "pylock.toml" and toolchain.runtime_requirements:
            # A pylock.toml is installed as given; the worker runtime's needs come on top.
            install(*toolchain.runtime_requirements)
        on_phase(BuildPhase.FINISHING)
        try:
            toolchain.install_runtime(python)
        except Exception as exc:  # noqa: BLE001 - any failure here fails the build
            message = f"Environment build failed while {BuildPhase.FINISHING}: {exc}"
            raise BuildFailed(message) from exc
        if toolchain.shared_with_workers:
            share(folder)
        if limits.max_bytes and directory_size(folder) > limits.max_bytes:
            raise DiskLimitExceeded(
                f"The environment takes more than TABPY_ENV_MAX_DISK_MB "
                f"({limits.max_bytes // (1024 * 1024)} MB); ask for fewer or smaller packages, "
                "or raise the limit."
            )
        details = {"python": toolchain.python_version, "spec": spec.as_json()}
        built = cache.complete(key, folder, details)
        if toolchain.shared_with_workers:
            _add_mode(built.path / MARKER, _READ_ALL)  # written last, by complete()
        return built
    except BaseException:
        cache.discard(folder)
        raise


def share(folder: Path) -> None:
    """Make ``folder``'s tree readable by every user: what another worker user needs.

    Folders get r-x and files r-- for all, programs (any execute bit) also x; only the
    server's user may write (uv makes its ``.lock`` file writable by all, and an environment
    is shared by every endpoint that uses it, so no worker may change it). Some files are
    private as written (the worker runtime is copied through temporary files, made 0600), and
    a restrictive umask makes everything so. Symlinks are left alone (their mode means
    nothing; the venv's ``python`` points at the server's interpreter).
    """
    for directory, _, files in os.walk(folder):  # symlinked folders are not entered
        _add_mode(Path(directory), _READ_ALL | _EXEC_ALL)
        for name in files:
            path = Path(directory, name)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            _add_mode(path, _READ_ALL | (_EXEC_ALL if mode & _EXEC_ALL else 0))


_READ_ALL = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_EXEC_ALL = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def _add_mode(path: Path, bits: int) -> None:
    """Add ``bits`` to ``path``'s mode and take write from group and others."""
    mode = stat.S_IMODE(path.lstat().st_mode)
    wanted = (mode | bits) & ~(stat.S_IWGRP | stat.S_IWOTH)
    if wanted != mode:
        os.chmod(path, wanted)


def lock_file_name(spec: EnvironmentSpec) -> str:
    """The file in an environment's folder that holds the lock it was built from."""
    return "pylock.toml" if spec.format == "pylock.toml" else "tabpy-lock.txt"


def _sha256(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()
