"""Finding the virtualenv that holds the real TabPy 2.16.0, for tests that run its client against
our server (marker ``reference``).

The tests never build that venv: building it downloads several hundred megabytes from the package
index, which a test run must not do behind anyone's back. ``scripts/reference-venv`` builds it
(``.ci/run`` calls it); the tests then find its interpreter at

1. ``$TABPY_REFERENCE_PYTHON``, when set, else
2. ``<cache>/tabpy-tests/ref-venv-2.16.0-py<X.Y>/bin/python``, where ``<cache>`` is
   ``$XDG_CACHE_HOME`` or ``~/.cache`` and ``X.Y`` the Python running the tests: the place
   ``scripts/reference-venv`` builds in by default.

When neither holds a usable TabPy 2.16.0 on the tests' Python version, the test skips saying so
(and fails under ``CI=true``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.components import REFERENCE, missing

REFERENCE_VERSION = "2.16.0"
PROBE_TIMEOUT = 60.0
#: The interpreter of a ready-made reference venv.
PYTHON_VARIABLE = "TABPY_REFERENCE_PYTHON"

# The client pickles functions by value, which ties the pickle to the Python minor version: the
# venv must run the same minor version as the server under test.
_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
_PROBE = (
    "import sys, importlib.metadata as m, tabpy.tabpy_tools.client;"
    "print(m.version('tabpy'), '%d.%d' % sys.version_info[:2])"
)


def default_venv(python_version: str = _PYTHON) -> Path:
    """Where ``scripts/reference-venv`` builds the venv for ``python_version`` by default."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tabpy-tests" / f"ref-venv-{REFERENCE_VERSION}-py{python_version}"


def isolated_environment() -> dict[str, str]:
    """No ``PYTHONPATH``/``TABPY_*``: the venv must see its own ``tabpy``, never this checkout."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not name.startswith("TABPY_")
    }


def reference_python() -> Path:
    """The reference venv's interpreter; skips the test (fails it under CI) when there is none."""
    configured = os.environ.get(PYTHON_VARIABLE)
    if configured:
        python, source = Path(configured).expanduser(), f"{PYTHON_VARIABLE}={configured}"
    else:
        python = default_venv() / "bin" / "python"
        source = f"{PYTHON_VARIABLE} is unset and the default location"
    problem = _problem(python)
    if problem is not None:
        missing(REFERENCE, f"{source}: {problem}")
    return python


def _problem(python: Path) -> str | None:
    """None when ``python`` runs TabPy 2.16.0 on our Python version, else what is wrong."""
    if not python.exists():
        return f"{python} does not exist"
    try:
        probe = subprocess.run(
            [str(python), "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            env=isolated_environment(),
            cwd=python.parent,  # not this checkout, whose tabpy package would shadow the venv's
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} does not run ({exc})"
    if probe.returncode != 0:
        return f"tabpy.tabpy_tools.client does not import: {probe.stderr.strip()[-300:]}"
    found = probe.stdout.split()
    if found != [REFERENCE_VERSION, _PYTHON]:
        return (
            f"{python} holds tabpy/Python {found}, "
            f"not tabpy {REFERENCE_VERSION} on Python {_PYTHON}"
        )
    return None
