"""A virtualenv holding the real TabPy 2.16.0, for tests that run its client against our server.

The venv lives at ``$TABPY_REFERENCE_VENV`` when set, else under the user's cache directory, and
is reused as long as its ``tabpy.tabpy_tools.client`` imports. Building it needs network access
and a few minutes, once; when that is impossible the calling test is skipped with the reason.
Concurrent test runs take a file lock, so only one of them builds and the others then reuse it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REFERENCE_VERSION = "2.16.0"
BUILD_TIMEOUT = 900.0
PROBE_TIMEOUT = 60.0

# The client pickles functions by value, which ties the pickle to the Python minor version: the
# venv must run the same minor version as the server under test.
_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
_PROBE = (
    "import sys, importlib.metadata as m, tabpy.tabpy_tools.client;"
    "print(m.version('tabpy'), '%d.%d' % sys.version_info[:2])"
)


def venv_path() -> Path:
    configured = os.environ.get("TABPY_REFERENCE_VENV")
    if configured:
        return Path(configured).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tabpy-tests" / f"ref-venv-{REFERENCE_VERSION}-py{_PYTHON}"


def isolated_environment() -> dict[str, str]:
    """No ``PYTHONPATH``/``TABPY_*``: the venv must see its own ``tabpy``, never this checkout."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not name.startswith("TABPY_")
    }


def reference_python() -> Path:
    """The reference venv's interpreter, building the venv if needed; skips the test if it can't."""
    venv = venv_path()
    if _usable(venv) is not None:
        venv.parent.mkdir(parents=True, exist_ok=True)
        with _locked(venv.with_name(venv.name + ".lock")):
            problem = _usable(venv)  # another run may have built it while we waited
            if problem is not None:
                _build(venv, problem)
    return venv / "bin" / "python"


def _usable(venv: Path) -> str | None:
    """None when ``venv`` holds TabPy 2.16.0 for our Python, else what is wrong with it."""
    python = venv / "bin" / "python"
    if not python.exists():
        return f"{python} does not exist"
    try:
        probe = subprocess.run(
            [str(python), "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            env=isolated_environment(),
            cwd=venv,  # not this checkout, whose tabpy package would shadow the venv's
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} does not run ({exc})"
    if probe.returncode != 0:
        return f"tabpy.tabpy_tools.client does not import: {probe.stderr.strip()[-300:]}"
    found = probe.stdout.split()
    if found != [REFERENCE_VERSION, _PYTHON]:
        return f"it holds tabpy/Python {found}, not tabpy {REFERENCE_VERSION} on Python {_PYTHON}"
    return None


def _build(venv: Path, problem: str) -> None:
    if venv.exists():
        if os.environ.get("TABPY_REFERENCE_VENV"):
            # Never delete a folder the user named: it may be theirs for something else.
            pytest.skip(
                f"TABPY_REFERENCE_VENV={venv} is not usable ({problem}); point it to a venv "
                f"holding tabpy=={REFERENCE_VERSION} on Python {_PYTHON}, or unset it"
            )
        shutil.rmtree(venv)  # our own cache entry, stale or half built by an interrupted run
    python = str(venv / "bin" / "python")
    pip_install = [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    for command in (
        [sys.executable, "-m", "venv", str(venv)],
        [*pip_install, "--timeout", "30", f"tabpy=={REFERENCE_VERSION}"],
    ):
        failure = _run_step(command, venv.parent)
        if failure is not None:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(
                f"cannot build the TabPy {REFERENCE_VERSION} reference venv at {venv} "
                f"(`{' '.join(command[2:])}` failed: {failure}); it needs network access to "
                "PyPI, or set TABPY_REFERENCE_VENV to an existing one"
            )
    problem_after = _usable(venv)
    if problem_after is not None:
        pytest.skip(f"the freshly built reference venv at {venv} is unusable: {problem_after}")


def _run_step(command: list[str], cwd: Path) -> str | None:
    """Run one build step; None on success, else why it failed."""
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            env=isolated_environment(),
            cwd=cwd,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode != 0:
        return (result.stderr or result.stdout).strip()[-600:] or f"exit code {result.returncode}"
    return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
