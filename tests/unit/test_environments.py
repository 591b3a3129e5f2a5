"""The worker runtime copied into environments: exactly what workers import, nothing more."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tabpy.runtime.environments import (
    WORKER_RUNTIME_REQUIREMENTS,
    Interpreter,
    install_worker_runtime,
    worker_runtime_files,
)
from tests.env_support import build_environment

ROOT = Path(__file__).resolve().parents[2]


def test_the_runtime_holds_the_worker_the_template_and_the_pickled_client_classes() -> None:
    files = set(worker_runtime_files())
    expected = {
        "tabpy/__init__.py",
        "tabpy/errors.py",
        "tabpy/runtime/__init__.py",
        "tabpy/runtime/worker.py",
        "tabpy/runtime/template.py",
        "tabpy/runtime/protocol.py",
        "tabpy/tabpy_tools/__init__.py",
        "tabpy/tabpy_tools/query_object.py",
        "tabpy/tabpy_tools/custom_query_object.py",
    }
    assert expected <= files
    # Nothing of the server side: no registry, HTTP, pools or configuration.
    server_side = ("tabpy/server/", "tabpy/registry/", "tabpy/arrow/", "tabpy/security/")
    assert not [f for f in files if f.startswith(server_side)]
    assert not files & {"tabpy/config.py", "tabpy/runtime/pool.py", "tabpy/runtime/pools.py"}


def test_the_runtime_imports_only_the_standard_library_cloudpickle_and_orjson() -> None:
    # An optional library (pandas) may be imported where its absence is handled.
    allowed = {*sys.stdlib_module_names, "tabpy", *WORKER_RUNTIME_REQUIREMENTS}
    outside: dict[str, set[str]] = {}
    for relative in worker_runtime_files():
        tree = ast.parse((ROOT / relative).read_text(encoding="utf-8"))
        guarded = {id(inner) for node in ast.walk(tree) if _catches_import_error(node)
                   for statement in node.body for inner in ast.walk(statement)}  # fmt: skip
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in allowed:
                    outside.setdefault(relative, set()).add(name)
    assert outside == {}


def _catches_import_error(node: ast.AST) -> bool:
    return isinstance(node, ast.Try) and any(
        isinstance(handler.type, ast.Name) and handler.type.id in ("ImportError", "Exception")
        for handler in node.handlers
    )


@pytest.mark.envs
def test_an_environment_with_the_runtime_imports_it_without_the_server(tmp_path: Path) -> None:
    interpreter = build_environment(tmp_path / "bare")
    program = (
        "import sys\n"
        "import tabpy.runtime.worker, tabpy.runtime.template\n"
        "import tabpy.tabpy_tools.custom_query_object\n"
        "top = {m.split('.')[0] for m in sys.modules} - {'__main__'}\n"
        "print(sorted(top - set(sys.stdlib_module_names)))\n"
        "print(tabpy.__file__)\n"
    )
    done = subprocess.run(
        [interpreter.python, "-I", "-c", program], capture_output=True, text=True, check=True
    )
    third_party, location = done.stdout.splitlines()
    assert set(eval(third_party)) <= {"tabpy", *WORKER_RUNTIME_REQUIREMENTS}
    assert location.startswith(str(tmp_path / "bare"))  # its own copy, not the server's


@pytest.mark.envs
def test_installing_again_refreshes_a_changed_file(tmp_path: Path) -> None:
    interpreter: Interpreter = build_environment(tmp_path / "again")
    site = subprocess.run(
        [
            interpreter.python,
            "-I",
            "-c",
            "import tabpy, os; print(os.path.dirname(tabpy.__file__))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    copied = Path(site) / "runtime" / "worker.py"
    copied.write_text("stale = True\n")
    install_worker_runtime(interpreter.python)
    assert copied.read_text() == (ROOT / "tabpy/runtime/worker.py").read_text()
