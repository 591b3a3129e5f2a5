"""Installing over TabPy 2.16 as docs/migrating.md says ends with this server working.

An environment holding Tableau's TabPy 2.16.0 (from the package index, with its dependencies,
as an admin would have it) gets the page's commands, run as written in a copy of this
checkout. Afterwards ``tabpy`` is this server: ``/info`` reports our version, TabPy is no longer
registered, none of its modules are left in the package, and the start-up does not warn about
TabPy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from doc_session import blocks, copy_checkout, index_problem, section
from live_server import READY_LINE, START_TIMEOUT, _LineCollector, write_config

import tabpy

ROOT = Path(__file__).resolve().parents[2]
MIGRATING = ROOT / "docs" / "migrating.md"
UPSTREAM = "tabpy==2.16.0"
INSTALL_TIMEOUT = 900.0


def environment(venv: Path) -> dict[str, str]:
    """A shell with ``venv`` activated and nothing of this test run (no PYTHONPATH, TABPY_*)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "PYTHONHOME") and not name.startswith(("TABPY_", "PIP_"))
    }
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cache = Path.home() / ".cache" / "pip"
    if cache.is_dir():
        env["PIP_CACHE_DIR"] = str(cache)
    return env


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 120.0) -> str:
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.reference
def test_documented_install_over_tabpy_2_16_gives_a_working_server(tmp_path: Path) -> None:
    problem = index_problem(sys.executable)
    if problem is not None:
        pytest.skip(f"installing TabPy 2.16 needs the package index: {problem}")
    venv = tmp_path / "venv"
    env = environment(venv)
    run([sys.executable, "-m", "venv", str(venv)], env, tmp_path)
    python = str(venv / "bin" / "python")
    upstream = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", UPSTREAM],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
    )  # fmt: skip
    if upstream.returncode != 0:
        pytest.skip(f"could not install {UPSTREAM}: {upstream.stderr.strip()[-500:]}")
    site = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env, tmp_path)
        .strip()
        .splitlines()[-1]
    )
    assert (site / "tabpy" / "tabpy_server").is_dir()  # TabPy's own server, before the switch

    steps = blocks(
        section(MIGRATING.read_text(encoding="utf-8"), "## Installing into TabPy's environment")
    )
    assert len(steps) == 1 and steps[0].language == "sh"
    checkout = copy_checkout(ROOT, tmp_path / "checkout")
    printed = run(["bash", "-e", "-o", "pipefail", "-c", steps[0].text], env, checkout,
                  timeout=INSTALL_TIMEOUT)  # fmt: skip
    assert "TabPy Server." in printed  # tabpy --help, the page's last step

    pip_list = run([python, "-m", "pip", "list", "--format=freeze"], env, tmp_path)
    assert f"tabpyx=={tabpy.__version__}" in pip_list.splitlines()
    assert not any(line.lower().startswith("tabpy==") for line in pip_list.splitlines())
    assert not (site / "tabpy" / "tabpy_server").exists()

    state = tmp_path / "state"
    state.mkdir()
    config = write_config(tmp_path, {"TABPY_PORT": "0", "TABPY_STATE_PATH": str(state),
                                     "TABPY_WORKERS": "1"})  # fmt: skip
    server = subprocess.Popen(
        [str(venv / "bin" / "tabpy"), "--config", str(config), "--disable-auth-warning"],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        log = _LineCollector(server.stderr)
        ready = log.wait_for(READY_LINE, START_TIMEOUT)
        assert ready is not None, log.text
        info = httpx.get(f"http://127.0.0.1:{ready.group(1)}/info", timeout=30).json()
        assert info["server_version"] == tabpy.__version__
        assert not re.search(r"TabPy \S+ is installed in this Python environment", log.text)
    finally:
        os.killpg(server.pid, 9)
        server.wait(timeout=30)
