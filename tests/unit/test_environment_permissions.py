"""With TABPY_WORKER_USER, environments are readable by that other user, writable by none.

Checked with the modes on disk (os.stat): the tests run as one user, so "readable by the
worker user" means readable by others, folders and programs traversable, nothing writable by
anyone but the server's user.
"""

from __future__ import annotations

import os
import platform
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tabpy.environments import BuildLimits, Environments, Toolchain, parse_spec
from tabpy.environments.builder import build, share
from tabpy.environments.cache import EnvironmentCache
from tabpy.runtime.environments import WORKER_RUNTIME_REQUIREMENTS, install_worker_runtime
from tests.components import require_envs


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def every_entry(root: Path) -> Iterator[Path]:
    yield root
    for directory, folders, files in os.walk(root):
        for name in [*folders, *files]:
            yield Path(directory, name)


def assert_shared(root: Path) -> None:
    """Every folder r-x and file r-- for others (programs x too); nothing group/other-writable."""
    for path in every_entry(root):
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            continue
        bits = stat.S_IMODE(info.st_mode)
        assert bits & (stat.S_IWGRP | stat.S_IWOTH) == 0, path
        assert bits & stat.S_IROTH, f"{path} is {oct(bits)}"
        if stat.S_ISDIR(info.st_mode) or bits & stat.S_IXUSR:
            assert bits & stat.S_IXOTH, f"{path} is {oct(bits)}"


@pytest.fixture
def private_umask() -> Iterator[None]:
    """A server whose umask keeps everything it writes to itself."""
    previous = os.umask(0o077)
    yield
    os.umask(previous)


def test_share_opens_a_private_tree_for_reading_only(tmp_path: Path, private_umask: None) -> None:
    tree = tmp_path / "env"
    (tree / "bin").mkdir(parents=True)
    (tree / "lib" / "site").mkdir(parents=True)
    (tree / "lib" / "site" / "module.py").write_text("x = 1\n")
    (tree / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(tree / "bin" / "tool", 0o700)
    (tree / "lib" / "secret").write_text("")
    os.chmod(tree / "lib" / "secret", 0o600)
    (tree / "bin" / "python").symlink_to(sys.executable)
    outside = mode(Path(sys.executable).resolve())
    assert mode(tree / "lib" / "site") == 0o700

    share(tree)

    assert mode(tree) == mode(tree / "bin") == mode(tree / "lib" / "site") == 0o755
    assert mode(tree / "lib" / "site" / "module.py") == 0o644
    assert mode(tree / "lib" / "secret") == 0o644
    assert mode(tree / "bin" / "tool") == 0o755
    assert mode(Path(sys.executable).resolve()) == outside  # a symlink's target is not touched
    assert_shared(tree)


def toolchain(shared: bool) -> Toolchain:
    return Toolchain(
        sys.executable,
        platform.python_version(),
        WORKER_RUNTIME_REQUIREMENTS,
        install_worker_runtime,
        shared_with_workers=shared,
    )


@pytest.mark.envs
def test_a_build_for_another_worker_user_is_readable_by_it(
    tmp_path: Path, private_umask: None
) -> None:
    require_envs()
    cache = EnvironmentCache(tmp_path / "environments")
    built = build(parse_spec(["six==1.16.0"]), cache, toolchain(True), BuildLimits(300, 0), print)
    assert_shared(built.path)
    # The environments folder is traversable, not listable, by others.
    assert mode(cache.root) & 0o077 == 0o011
    runtime = list(built.path.rglob("tabpy/runtime/worker.py"))
    assert runtime and mode(runtime[0]) == 0o644  # copied through a 0600 temporary file


@pytest.mark.envs
def test_without_a_worker_user_the_umask_stands_and_a_later_start_shares(
    tmp_path: Path, private_umask: None
) -> None:
    require_envs()
    cache = EnvironmentCache(tmp_path / "environments")
    built = build(parse_spec(["six==1.16.0"]), cache, toolchain(False), BuildLimits(300, 0), print)
    assert mode(built.path) == 0o700
    assert mode(built.path / "tabpy-lock.txt") == 0o600

    # TABPY_WORKER_USER set later: the next start opens what was built before.
    environments = Environments(
        cache.root, toolchain(True), BuildLimits(300, 0), gc_grace_seconds=3600
    )
    environments.start()
    environments.close()
    assert_shared(built.path)
