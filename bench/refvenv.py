"""Create or reuse the reference TabPy 2.16.0 virtualenv (bench/.ref-venv)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

REF_VERSION = "2.16.0"
_PROBE = (
    "import importlib.metadata as m, pathlib, sys, tabpy;"
    "print(m.version('tabpy'));"
    "print(pathlib.Path(tabpy.__file__).parent);"
    "print('%d.%d.%d' % sys.version_info[:3])"
)


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def probe(venv: Path) -> dict | None:
    """Return {'version', 'pkg_dir', 'python'} if `venv` holds a usable TabPy, else None."""
    py = _python(venv)
    if not py.exists() or not (venv / "bin" / "tabpy").exists():
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        out = subprocess.run(
            [str(py), "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=str(venv),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    lines = out.stdout.split()
    if len(lines) != 3:
        return None
    return {"version": lines[0], "pkg_dir": Path(lines[1]), "python": lines[2]}


def _valid(info: dict | None) -> bool:
    want_py = ".".join(map(str, sys.version_info[:3]))
    return bool(info) and info["version"] == REF_VERSION and info["python"] == want_py


def ensure(venv: Path, log=print) -> dict:
    """Make sure `venv` holds tabpy==REF_VERSION built on the running interpreter.

    A build holds an exclusive flock on `<venv>.lock` (the same lock the integration tests take
    when they are pointed at this venv), so concurrent runs never build it twice.
    """
    info = probe(venv)
    if _valid(info):
        log(f"reference venv OK: {venv} (tabpy {info['version']}, python {info['python']})")
        return info
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            info = probe(venv)  # another process may have built it while we waited
            if _valid(info):
                log(f"reference venv OK: {venv} (built meanwhile by another process)")
                return info
            return _build(venv, info, log)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(venv: Path, info: dict | None, log) -> dict:
    want_py = ".".join(map(str, sys.version_info[:3]))
    if venv.exists():
        log(f"reference venv at {venv} is not valid ({info}); recreating")
        shutil.rmtree(venv)
    log(f"creating reference venv {venv} with {sys.executable} (python {want_py})")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    log(f"pip install tabpy=={REF_VERSION} (this takes a few minutes the first time)")
    subprocess.run(
        [
            str(_python(venv)),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            f"tabpy=={REF_VERSION}",
        ],
        check=True,
        env=env,
    )
    info = probe(venv)
    if not info or info["version"] != REF_VERSION:
        raise RuntimeError(f"reference venv {venv} still invalid after install: {info}")
    log(f"reference venv ready: tabpy {info['version']}")
    return info


if __name__ == "__main__":
    ensure(Path(__file__).resolve().parent / ".ref-venv")
