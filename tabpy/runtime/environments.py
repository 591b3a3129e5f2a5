"""Python environments other than the server's own, as the worker pools see them.

An endpoint deployed with requirements runs in an environment built for them (a virtualenv
with its own interpreter and site-packages). Its workers run that interpreter, so the part of
this package they need, the *worker runtime*, is copied into the environment from the server's
own files: no network copy of our code, and always the same version as the server speaking to
it. The runtime needs only the standard library, cloudpickle and orjson
(:data:`WORKER_RUNTIME_REQUIREMENTS`), which the builder installs into every environment.

Which modules make up the runtime is computed, not listed: the ``tabpy`` imports reachable
from the worker's and the template's entry points, plus the client classes that deployed
objects' pickles reference. A test holds that closure to the three dependencies above.
"""

from __future__ import annotations

import ast
import contextlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "WORKER_RUNTIME_REQUIREMENTS",
    "Interpreter",
    "RuntimeInstallFailed",
    "install_worker_runtime",
    "site_packages",
    "worker_runtime_files",
]

#: What the worker runtime imports beyond the standard library; the builder adds these.
WORKER_RUNTIME_REQUIREMENTS: tuple[str, ...] = ("cloudpickle", "orjson")

#: The modules a worker process starts from, and the classes deployed pickles name.
RUNTIME_ROOTS = (
    "tabpy.runtime.worker",
    "tabpy.runtime.template",
    "tabpy.tabpy_tools.custom_query_object",
    "tabpy.tabpy_tools.query_object",
)

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
_SITE_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Interpreter:
    """A built environment: its content key (hex) and the absolute path of its python."""

    key: str
    python: str

    @property
    def label(self) -> str:
        """A short name for logs and metric labels: the key's first twelve characters."""
        return self.key[:12]


class RuntimeInstallFailed(Exception):
    """The worker runtime could not be put into an environment; the message says why."""


def worker_runtime_files() -> list[str]:
    """Paths (relative to the directory holding ``tabpy``) of the worker runtime's modules."""
    found: set[str] = set()
    pending = list(RUNTIME_ROOTS)
    while pending:
        module = pending.pop()
        path = _module_path(module)
        if path is None:
            continue
        relative = path.relative_to(_PACKAGE_ROOT).as_posix()
        if relative in found:
            continue
        found.add(relative)
        # The packages on the way, so that importing the module works at all.
        parts = module.split(".")
        for end in range(1, len(parts)):
            pending.append(".".join(parts[:end]))
        pending.extend(_tabpy_imports(path, module))
    return sorted(found)


def _module_path(module: str) -> Path | None:
    base = _PACKAGE_ROOT.joinpath(*module.split("."))
    package = base / "__init__.py"
    if package.is_file():
        return package
    source = base.with_suffix(".py")
    return source if source.is_file() else None


def _tabpy_imports(path: Path, module: str) -> list[str]:
    """Every ``tabpy`` module ``path`` imports, wherever in the file the import is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.append(base)
            # ``from tabpy.runtime import worker`` names a module, not only an attribute.
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return [name for name in names if name == "tabpy" or name.startswith("tabpy.")]


def site_packages(python: str) -> Path:
    """The environment's site-packages (``purelib``), as its own interpreter reports it."""
    try:
        done = subprocess.run(
            [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            timeout=_SITE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeInstallFailed(f"cannot run {python} ({exc})") from None
    if done.returncode != 0:
        raise RuntimeInstallFailed(
            f"{python} could not name its site-packages: {done.stderr.strip()[-500:]}"
        )
    return Path(done.stdout.strip())


def install_worker_runtime(python: str) -> None:
    """Copy the worker runtime from this server's package into ``python``'s site-packages.

    Each file is written beside its destination and renamed over it, so a worker starting
    meanwhile sees the old file or the new one, never half of one.
    """
    target = site_packages(python)
    for relative in worker_runtime_files():
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".tmp")
        os.close(handle)
        try:
            shutil.copyfile(_PACKAGE_ROOT / relative, temporary)
            os.replace(temporary, destination)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise RuntimeInstallFailed(f"cannot write {destination} ({exc})") from None
