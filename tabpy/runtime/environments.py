"""The running side of per-endpoint environments: which interpreter runs an endpoint.

A minimal version: the building side (:mod:`tabpy.environments`) needs ``Interpreter`` and a
way to make the worker runtime importable in a built environment. The per-environment pools
replace ``install_worker_runtime`` with a copy of just the worker modules.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import tabpy

__all__ = ["WORKER_RUNTIME_REQUIREMENTS", "Interpreter", "install_worker_runtime"]

#: What the worker runtime itself imports; added to every environment's resolution.
WORKER_RUNTIME_REQUIREMENTS: tuple[str, ...] = ("cloudpickle", "orjson")


@dataclass(frozen=True)
class Interpreter:
    """A built environment: its content key (hex) and its python executable's absolute path."""

    key: str
    python: str


def install_worker_runtime(python: str) -> None:
    """Make the server's ``tabpy`` package importable by ``python`` (a ``.pth`` file)."""
    purelib = subprocess.run(
        [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    package_parent = Path(tabpy.__file__).resolve().parent.parent
    (Path(purelib) / "tabpy_worker_runtime.pth").write_text(f"{package_parent}\n", "utf-8")
