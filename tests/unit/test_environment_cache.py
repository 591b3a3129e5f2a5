"""The environment cache on disk: atomic completion, leftovers of killed builds, collection."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tabpy.environments import BuildLimits, Environments, Toolchain
from tabpy.environments.cache import MARKER, EnvironmentCache

KEY_A = "a" * 64
KEY_B = "b" * 64


def fake_build(cache: EnvironmentCache, key: str, payload: bytes = b"x" * 100) -> Path:
    """A completed environment made by hand: a folder with a file, completed by the cache."""
    folder = cache.new_build_folder(key)
    assert folder.name.startswith(".building-")
    (folder / "bin").mkdir()
    (folder / "bin" / "python").write_bytes(payload)
    return cache.complete(key, folder, {"python": "3.11.7"}).path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_an_environment_appears_under_its_key_only_complete(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "environments")
    assert cache.find(KEY_A) is None and cache.all() == []
    folder = cache.new_build_folder(KEY_A)
    (folder / "lib").mkdir()
    (folder / "lib" / "module.py").write_text("x = 1\n")
    assert cache.find(KEY_A) is None  # building: not visible under its key
    built = cache.complete(KEY_A, folder, {"python": "3.11.7"})
    assert not folder.exists()
    assert built.path == cache.root / KEY_A
    assert built.python == str(cache.root / KEY_A / "bin" / "python")
    marker = json.loads((built.path / MARKER).read_text())
    assert marker["key"] == KEY_A and marker["size"] == built.size == len("x = 1\n")
    assert cache.find(KEY_A) == built
    assert cache.all() == [built]


def test_a_folder_without_its_marker_is_not_an_environment(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    (tmp_path / KEY_A / "bin").mkdir(parents=True)  # say, copied in by hand, half done
    assert cache.find(KEY_A) is None and cache.all() == []


def test_completing_a_key_built_meanwhile_keeps_the_first(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    first = fake_build(cache, KEY_A, b"first")
    second = cache.new_build_folder(KEY_A)
    (second / "bin").mkdir()
    (second / "bin" / "python").write_bytes(b"second")
    (second / "bin" / "other").write_bytes(b"more")
    kept = cache.complete(KEY_A, second, {})
    assert kept.path == first and (first / "bin" / "python").read_bytes() == b"first"
    assert not second.exists()


def test_start_removes_what_killed_builds_left_but_not_running_ones(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    fake_build(cache, KEY_A)
    killed = tmp_path / f".building-{KEY_B[:16]}-{dead_pid()}-0123abcd"
    (killed / "lib").mkdir(parents=True)
    collecting = tmp_path / f".removing-{KEY_B[:16]}-{dead_pid()}-0123abcd"
    collecting.mkdir()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        running = tmp_path / f".building-{KEY_B[:16]}-{other.pid}-0123abcd"
        running.mkdir()
        try:
            assert sorted(cache.prepare()) == sorted([killed.name, collecting.name])
            assert not killed.exists() and not collecting.exists()
            assert running.exists()  # another live server's build
            assert cache.find(KEY_A) is not None
        finally:
            other.kill()


def test_prepare_leaves_no_trace_on_a_server_that_never_builds(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "environments")
    assert cache.prepare() == []
    assert not (tmp_path / "environments").exists()


def test_remove_hides_then_deletes_and_forgets_the_specs_that_named_it(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    fake_build(cache, KEY_A)
    cache.remember("spec-1", KEY_A)
    cache.remember("spec-2", KEY_B)
    assert cache.key_of("spec-1") == KEY_A
    cache.remove(KEY_A)
    assert cache.find(KEY_A) is None
    assert [p.name for p in tmp_path.iterdir() if p.name != "specs"] == []
    assert cache.key_of("spec-1") is None and cache.key_of("spec-2") == KEY_B
    cache.remove(KEY_A)  # already gone: nothing to do


def manager(root: Path, grace: float) -> Environments:
    toolchain = Toolchain(sys.executable, "3.11.7", (), lambda _: None)
    return Environments(root, toolchain, BuildLimits(60, 0), gc_grace_seconds=grace)


def test_collection_removes_unused_environments_after_the_grace_period(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    fake_build(cache, KEY_A)
    fake_build(cache, KEY_B)
    environments = manager(tmp_path, grace=0.3)
    environments.start()
    try:
        environments.retain([KEY_A])
        assert environments.collect() == []  # B is unused, but not for long enough yet
        assert environments.usage().count == 2
        time.sleep(0.35)
        assert environments.collect() == [KEY_B]
        assert cache.find(KEY_A) is not None and cache.find(KEY_B) is None
        # A stops being used: its grace period starts then, not at start-up.
        environments.retain([])
        assert environments.collect() == []
        time.sleep(0.35)
        assert environments.collect() == [KEY_A]
        assert environments.usage().count == 0 and environments.usage().disk_bytes == 0
    finally:
        environments.close()


def test_usage_counts_environments_and_their_bytes(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    fake_build(cache, KEY_A, b"1" * 1000)
    fake_build(cache, KEY_B, b"2" * 24)
    usage = manager(tmp_path, grace=60).usage()
    assert (usage.count, usage.disk_bytes, usage.building) == (2, 1024, 0)


@pytest.mark.parametrize("grace", [0.0, 3600.0])
def test_a_used_environment_is_never_collected(tmp_path: Path, grace: float) -> None:
    cache = EnvironmentCache(tmp_path)
    fake_build(cache, KEY_A)
    environments = manager(tmp_path, grace=grace)
    environments.start()
    try:
        environments.retain([KEY_A])
        assert environments.collect() == []
        assert cache.find(KEY_A) is not None
    finally:
        environments.close()
