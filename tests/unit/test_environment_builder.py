"""Building environments with the real uv: success, failure, limits, and nothing half-made."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tabpy.environments import BuildLimits, BuildPhase, Environments, Toolchain, parse_spec
from tabpy.environments.builder import build
from tabpy.environments.cache import EnvironmentCache
from tabpy.environments.environment_errors import BuildFailed, BuildTimedOut, DiskLimitExceeded
from tabpy.environments.uv_runner import run_uv
from tabpy.runtime.environments import WORKER_RUNTIME_REQUIREMENTS, install_worker_runtime
from tests.components import require_envs

pytestmark = pytest.mark.envs


@pytest.fixture(scope="module", autouse=True)
def _uv() -> None:
    require_envs()


def toolchain(install: object = install_worker_runtime) -> Toolchain:
    return Toolchain(
        sys.executable,
        platform.python_version(),
        WORKER_RUNTIME_REQUIREMENTS,
        install,  # type: ignore[arg-type]
    )


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


def test_a_build_installs_the_lock_and_the_worker_runtime(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "environments")
    phases: list[BuildPhase] = []
    built = build(
        parse_spec(["six==1.15.0"]), cache, toolchain(), BuildLimits(300, 0), phases.append
    )
    assert phases == [
        BuildPhase.RESOLVING,
        BuildPhase.CREATING,
        BuildPhase.INSTALLING,
        BuildPhase.FINISHING,
    ]
    assert built.path == cache.root / built.key and cache.find(built.key) == built
    lock = (built.path / "tabpy-lock.txt").read_text()
    assert "six==1.15.0" in lock and "cloudpickle==" in lock and "orjson==" in lock
    probe = subprocess.run(
        [
            built.python,
            "-c",
            "import six, cloudpickle, orjson, tabpy.errors; print(six.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "1.15.0"
    assert leftovers(cache.root) == []

    # The same spec again: resolved to the same lock, so the same key, found and not rebuilt.
    phases.clear()
    inode = built.path.stat().st_ino
    again = build(
        parse_spec(["six==1.15.0"]), cache, toolchain(), BuildLimits(300, 0), phases.append
    )
    assert again == built and built.path.stat().st_ino == inode
    assert phases == [BuildPhase.RESOLVING]


def test_a_resolution_failure_quotes_uv_and_leaves_nothing(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    with pytest.raises(BuildFailed) as failed:
        build(
            parse_spec(["tabpyx-no-such-package-zz"]),
            cache,
            toolchain(),
            BuildLimits(300, 0),
            print,
        )
    assert failed.value.message.startswith("Environment build failed while resolving requirements")
    assert "tabpyx-no-such-package-zz" in failed.value.message
    assert "\x1b[" not in failed.value.message  # no terminal colours
    assert cache.all() == [] and leftovers(tmp_path) == []


def test_a_failure_after_the_install_removes_the_half_made_environment(tmp_path: Path) -> None:
    def broken(python: str) -> None:
        raise OSError("disk full")

    cache = EnvironmentCache(tmp_path)
    with pytest.raises(BuildFailed, match="installing the worker runtime: disk full"):
        build(parse_spec(["six==1.16.0"]), cache, toolchain(broken), BuildLimits(300, 0), print)
    assert cache.all() == [] and leftovers(tmp_path) == []


def test_the_disk_limit_stops_the_build_and_removes_it(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    with pytest.raises(DiskLimitExceeded, match="TABPY_ENV_MAX_DISK_MB"):
        build(parse_spec(["six==1.16.0"]), cache, toolchain(), BuildLimits(300, 1024), print)
    assert cache.all() == [] and leftovers(tmp_path) == []


def test_the_time_limit_stops_uv(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path)
    started = time.monotonic()
    with pytest.raises(BuildTimedOut, match="TABPY_ENV_BUILD_TIMEOUT"):
        build(parse_spec(["six==1.16.0"]), cache, toolchain(), BuildLimits(0.001, 0), print)
    assert time.monotonic() - started < 10
    assert cache.all() == [] and leftovers(tmp_path) == []


def test_the_manager_builds_once_per_spec_and_remembers_it_across_restarts(tmp_path: Path) -> None:
    spec = parse_spec(["six==1.16.0"])

    def wait(environments: Environments) -> None:
        deadline = time.monotonic() + 300
        while True:
            state = environments.state(spec)
            assert state is not None
            if state.ready or state.failed:
                return
            assert time.monotonic() < deadline
            time.sleep(0.05)

    first = Environments(tmp_path, toolchain(), BuildLimits(300, 0), gc_grace_seconds=3600)
    first.start()
    state = first.request(spec)
    assert not state.ready and state.message().startswith("Building environment: ")
    assert first.request(spec) is first.state(spec)  # one build, not two
    wait(first)
    built = first.state(spec).built  # type: ignore[union-attr]
    assert built is not None and first.usage().count == 1
    first.close()

    # A new process (a restart): ready at once, from the key remembered on disk, no uv run.
    second = Environments(tmp_path, toolchain(), BuildLimits(300, 0), gc_grace_seconds=3600)
    second.start()
    again = second.request(spec)
    assert again.ready and again.built == built
    assert second.find_built(spec) == built
    second.close()


def sleeper(seconds: float, write: Path | None = None) -> list[str]:
    """``uv run`` of a script that (optionally) fills a file, then sleeps: a stuck installer."""
    fill = f"open({str(write)!r}, 'wb').write(b'x' * 4_000_000); " if write else ""
    script = f"{fill}import time; time.sleep({seconds})"
    return ["run", "--no-project", "--python", sys.executable, "--", "python", "-c", script]


def test_a_command_past_its_deadline_is_killed_with_what_it_started(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(BuildTimedOut, match="while installing packages"):
        run_uv(sleeper(60), what="installing packages", deadline=started + 1.5, cwd=tmp_path)
    assert time.monotonic() - started < 10
    left = subprocess.run(
        ["pgrep", "-f", "time.sleep\\(60\\)"], capture_output=True, text=True, check=False
    )
    assert left.stdout.strip() == ""


def test_a_command_growing_past_the_disk_limit_is_stopped(tmp_path: Path) -> None:
    watched = tmp_path / "env"
    watched.mkdir()
    started = time.monotonic()
    with pytest.raises(DiskLimitExceeded, match="TABPY_ENV_MAX_DISK_MB"):
        run_uv(
            sleeper(60, watched / "big"),
            what="installing packages",
            deadline=started + 60,
            cwd=tmp_path,
            watch=watched,
            max_bytes=1_000_000,
        )
    assert time.monotonic() - started < 20
