"""The outside components some tests need, and what a test does when one is missing.

On a developer's machine a missing component skips the test and says how to install it, so
the rest of the suite still runs. Under CI (``CI=true`` in the environment) the same absence
fails the test: ``.ci/run`` installs every component, so a skip there would mean a whole area
went untested while the run still looked green.

Each component has a pytest marker of the same name (registered in ``pyproject.toml``), so a
run can leave an area out on purpose: ``pytest -m "not reference"``. Deselecting is visible
on the command line; skipping is not, which is why CI refuses skips but allows deselection.

The hooks at the end are a safety net for skips that do not come through ``missing``
(``pytest.importorskip``, a bare ``pytest.skip``): under CI they turn those into failures
too. ``tests/conftest.py`` installs them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import NoReturn

import pytest

#: The environment variable CI services (and ``.ci/run``) set to ``true``.
CI_VARIABLE = "CI"


@dataclass(frozen=True)
class Component:
    """Something outside the Python environment's core that a test needs."""

    #: The pytest marker of the tests that need it (``pytest -m NAME``).
    marker: str
    #: What it is, as the start of a sentence ("nginx", "the pyarrow package").
    what: str
    #: How to get it.
    hint: str


POSTGRES = Component(
    "postgres",
    "the PostgreSQL server binaries (initdb, pg_ctl) and the psycopg driver",
    "Debian: apt-get install -y postgresql; pip install '.[test]'",
)
CHROMIUM = Component(
    "chromium",
    "headless Chromium and the websockets package",
    "Debian: apt-get install -y chromium; pip install '.[test]'",
)
NGINX = Component("nginx", "nginx", "Debian: apt-get install -y nginx-light")
REFERENCE = Component(
    "reference",
    "a virtualenv holding TabPy 2.16.0 (the reference client)",
    "build it with scripts/reference-venv (needs the package index once), "
    "or point TABPY_REFERENCE_PYTHON at the python of such a venv",
)
ARROW = Component("arrow", "the pyarrow package (the arrow extra)", "pip install '.[test]'")
MODELS = Component(
    "models",
    "the pre-built models' libraries (the models extra)",
    "pip install '.[test]'",
)
SYSTEMD = Component(
    "systemd",
    "systemd-analyze and the tabpy command",
    "Debian: apt-get install -y systemd; pip install '.[test]' (not only PYTHONPATH)",
)

CGROUP = Component(
    "cgroup",
    "a writable cgroup v2 hierarchy with cgroup.kill (Linux 5.14+)",
    "run as root with /sys/fs/cgroup mounted read-write (docker: --cgroupns=private "
    "--cgroup-parent, or --privileged), or under systemd with Delegate=yes",
)

ENVS = Component(
    "envs",
    "the uv binary (the envs extra) and a package index it reaches",
    "pip install '.[test]'; give uv an index it can reach (UV_INDEX_URL or uv.toml)",
)

FLEET = Component(
    "fleet",
    "root with ip netns (iproute2), nginx and PostgreSQL, for a fleet of instances",
    "run as root; Debian: apt-get install -y iproute2 nginx-light postgresql",
)

ALL = (POSTGRES, CHROMIUM, NGINX, REFERENCE, ARROW, MODELS, SYSTEMD, CGROUP, ENVS, FLEET)


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this run is CI's, where every component must be present."""
    value = (os.environ if environ is None else environ).get(CI_VARIABLE, "")
    return value.strip().lower() in ("true", "1", "yes")


def missing(
    component: Component, detail: str = "", *, environ: Mapping[str, str] | None = None
) -> NoReturn:
    """Skip the calling test (or module) because ``component`` is absent; under CI, fail it.

    ``detail`` says what exactly was not found, for the person reading the report.
    """
    message = f"{component.what}: not available"
    if detail:
        message += f" ({detail})"
    message += f"; {component.hint}"
    if in_ci(environ):
        pytest.fail(
            f"{CI_VARIABLE}=true but {message}. CI must install every component (.ci/run); "
            f"to leave this area out on purpose, deselect it: -m 'not {component.marker}'",
            pytrace=False,
        )
    pytest.skip(f"{message} [-m {component.marker}]", allow_module_level=True)


def require_module(
    name: str, component: Component, *, environ: Mapping[str, str] | None = None
) -> ModuleType:
    """Import ``name``, or report ``component`` missing (as ``pytest.importorskip`` would skip)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(component, f"import {name} failed: {exc}", environ=environ)


def require_envs(*, environ: Mapping[str, str] | None = None) -> str:
    """The uv binary, once it has shown it resolves a small package from its index."""
    import subprocess
    import sys

    uv = require_module("uv", ENVS, environ=environ)
    try:
        binary = str(uv.find_uv_bin())
        probe = subprocess.run(
            [binary, "pip", "compile", "-", "--python", sys.executable, "--quiet", "--no-header"],
            input="six\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        missing(ENVS, f"uv did not run: {exc}", environ=environ)
    if probe.returncode != 0:
        missing(ENVS, f"uv cannot resolve six: {probe.stderr.strip()[:300]}", environ=environ)
    return binary


# --- the safety net --------------------------------------------------------------------------


def _declared_skip(item: pytest.Item) -> bool:
    """A ``skip``/``skipif`` marker is a decision written next to the test, not a surprise."""
    return any(item.iter_markers("skip")) or any(item.iter_markers("skipif"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail") and not _declared_skip(item):
        report.outcome = "failed"
        report.longrepr = f"{CI_VARIABLE}=true forbids skipping: {_skip_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, None]:
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"{CI_VARIABLE}=true forbids skipping a module: {_skip_reason(report)}"


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)
