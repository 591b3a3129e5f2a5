"""Python environments for tests: built with uv, with the worker runtime copied in.

Each environment is a virtualenv of the interpreter running the tests (so the worker runtime's
Python version matches), with cloudpickle, orjson and the packages a test asks for. uv caches
downloads, so after the first run an environment takes well under a second to build. A machine
without uv skips these tests, and CI (``CI=true``) fails them: see ``tests/components.py``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import Any

from tabpy.runtime.environments import (
    WORKER_RUNTIME_REQUIREMENTS,
    Interpreter,
    install_worker_runtime,
)
from tests.components import ENVS, missing

_BUILD_TIMEOUT_SECONDS = 300


def uv_binary() -> str:
    """The uv executable shipped by the ``uv`` package, or the component is missing."""
    try:
        from uv import find_uv_bin
    except ImportError as exc:
        missing(ENVS, f"import uv failed: {exc}")
    return str(find_uv_bin())


def build_environment(directory: Path, *requirements: str) -> Interpreter:
    """A virtualenv at ``directory`` holding ``requirements`` and the worker runtime."""
    uv = uv_binary()
    python = directory / "bin" / "python"
    if not python.exists():
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(directory)])
        packages = [*WORKER_RUNTIME_REQUIREMENTS, *requirements]
        _run([uv, "pip", "install", "--quiet", "--python", str(python), *packages])
    install_worker_runtime(str(python))
    key = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()
    return Interpreter(key=key, python=str(python))


def default_six() -> str | None:
    """The version of six in the server's own environment, or None if it has none.

    The tests pin six in their environments; whether the server's environment has it too
    depends on what else is installed (python-dateutil needs it), so they ask.
    """
    try:
        return importlib.metadata.version("six")
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(command: list[str]) -> None:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_SECONDS, check=False
    )
    if done.returncode != 0:
        # uv's own words: usually an unreachable index, which is the component missing.
        missing(ENVS, f"{' '.join(command[:3])} failed: {done.stderr.strip()[-400:]}")


def main_function(source: str, name: str) -> Any:
    """A function defined as if in a client's ``__main__``: cloudpickle sends it by value,
    so an environment that cannot import the tests can still load it."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace[name]
