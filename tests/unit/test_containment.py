"""Choosing a containment mechanism, and finding a worker's descendants through /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tabpy.runtime import containment
from tabpy.runtime.containment import (
    ContainmentUnavailable,
    SubreaperContainment,
    choose_containment,
    descendants,
)


def test_subreaper_is_used_when_asked() -> None:
    assert choose_containment("subreaper").name == "subreaper"


def test_auto_falls_back_to_a_subreaper_without_cgroups(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> Path:
        raise ContainmentUnavailable("no cgroup v2 hierarchy is mounted")

    monkeypatch.setattr(containment, "_own_cgroup", unavailable)
    assert choose_containment("auto").name == "subreaper"
    with pytest.raises(ContainmentUnavailable, match="no cgroup v2"):
        choose_containment("cgroup")


def test_descendants_include_grandchildren_in_their_own_session() -> None:
    # A child that starts a grandchild in a new session, then waits for it.
    code = (
        "import subprocess, sys; "
        "p = subprocess.Popen(['sleep', '30'], start_new_session=True); "
        "print(p.pid, flush=True); p.wait()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        found = descendants(os.getpid())
        assert child.pid in found and grandchild in found
        SubreaperContainment().kill(child.pid)
        child.wait(timeout=10)
        assert grandchild not in [p for p in descendants(os.getpid()) if _alive(p)]
    finally:
        child.kill()
        child.wait()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_groups_of_dead_servers_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed server leaves its (empty) groups behind; the next one removes them."""
    dead = 2**22 + 1  # above the largest PID Linux hands out
    stale = tmp_path / f"tabpy-{dead}"
    (stale / "worker-7").mkdir(parents=True)
    alive = tmp_path / f"tabpy-{os.getpid()}"
    (alive / "worker-8").mkdir(parents=True)
    containment._remove_stale(tmp_path)
    assert not stale.exists()
    assert (alive / "worker-8").exists()
