"""How the pool finds and kills everything a worker's script started.

A process-group kill misses a child that a script started in its own session
(``start_new_session=True``). Two mechanisms close that gap; the pool uses one:

``cgroup``
    Each worker gets its own cgroup v2 directory, under a ``tabpy-<pid>`` directory in the
    server's own cgroup. Everything the worker starts stays in it whatever session or process
    group it makes, and ``cgroup.kill`` ends them all at once. Where the memory controller is
    delegated, ``memory.max`` caps the whole tree's memory too. Needs a writable cgroup v2
    hierarchy (root, or a service with ``Delegate=yes``).
``subreaper``
    The worker marks itself a child subreaper, so a script's orphaned descendants are
    reparented to the worker instead of to init. On kill, the pool stops the worker, kills
    every descendant it finds in ``/proc`` (repeating until none is left), then the worker.

``auto`` picks ``cgroup`` where it works and ``subreaper`` otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, Protocol

from tabpy.errors import TabPyError

__all__ = [
    "CONTAINMENT_MODES",
    "CgroupContainment",
    "Containment",
    "ContainmentMode",
    "ContainmentUnavailable",
    "SubreaperContainment",
    "become_subreaper",
    "choose_containment",
    "descendants",
]

logger = logging.getLogger(__name__)

ContainmentMode = Literal["auto", "cgroup", "subreaper"]
CONTAINMENT_MODES: tuple[ContainmentMode, ...] = ("auto", "cgroup", "subreaper")

_PR_SET_CHILD_SUBREAPER = 36
#: Kill rounds before giving up on a descendant tree that keeps forking.
_KILL_ROUNDS = 50


class ContainmentUnavailable(TabPyError):
    """The mechanism asked for cannot work on this machine; the message says why."""


class Containment(Protocol):
    #: ``"cgroup"`` or ``"subreaper"``: shown in the log, the status page and ``/metrics``.
    name: str

    def adopt(self, pid: int, memory_limit_mb: int) -> None:
        """Take in a freshly started worker, before it runs any job."""

    def kill(self, pid: int) -> None:
        """Kill the worker and every process it or its scripts started."""

    def release(self, pid: int) -> None:
        """Forget a worker that has been killed and reaped."""

    def close(self) -> None:
        """Remove what the mechanism created (the pool has killed every worker)."""


class SubreaperContainment:
    """Workers are subreapers; the pool kills their descendant tree found in ``/proc``."""

    name = "subreaper"

    def adopt(self, pid: int, memory_limit_mb: int) -> None:
        pass  # the worker marks itself (become_subreaper) as it starts

    def kill(self, pid: int) -> None:
        # A stopped worker cannot start more processes, and stays the subreaper of the
        # orphans its killed descendants leave, so each round finds what the last one missed.
        _signal(pid, signal.SIGSTOP)
        for _ in range(_KILL_ROUNDS):
            living = [child for child in descendants(pid) if not _is_zombie(child)]
            if not living:
                break
            for child in living:
                _signal(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)

    def release(self, pid: int) -> None:
        pass

    def close(self) -> None:
        pass


class CgroupContainment:
    """One cgroup v2 directory per worker; ``cgroup.kill`` ends the whole tree."""

    name = "cgroup"

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self._memory = _enable_memory(parent)

    @classmethod
    def create(cls) -> CgroupContainment:
        """Make ``tabpy-<pid>`` in the server's own cgroup, or say why that is impossible."""
        own = _own_cgroup()
        _remove_stale(own)
        parent = own / f"tabpy-{os.getpid()}"
        try:
            parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise ContainmentUnavailable(f"cannot create a cgroup in {own} ({exc})") from None
        if not (parent / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                parent.rmdir()
            raise ContainmentUnavailable("the kernel has no cgroup.kill (Linux 5.14 or later)")
        return cls(parent)

    def adopt(self, pid: int, memory_limit_mb: int) -> None:
        group = self.parent / f"worker-{pid}"
        group.mkdir(exist_ok=True)
        if self._memory and memory_limit_mb > 0:
            # The tree's real memory, on top of what the template's warm start shares.
            (group / "memory.max").write_text(str(memory_limit_mb * 1024 * 1024))
        (group / "cgroup.procs").write_text(str(pid))

    def kill(self, pid: int) -> None:
        # Not adopted if it failed to start: then the process group is all there is.
        with contextlib.suppress(OSError):
            (self.parent / f"worker-{pid}" / "cgroup.kill").write_text("1")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)

    def release(self, pid: int) -> None:
        # A cgroup can be removed once its last process is gone; a killed tree takes a moment.
        with contextlib.suppress(OSError):
            (self.parent / f"worker-{pid}").rmdir()

    def close(self) -> None:
        for group in self.parent.glob("worker-*"):
            with contextlib.suppress(OSError):
                (group / "cgroup.kill").write_text("1")
            with contextlib.suppress(OSError):
                group.rmdir()
        with contextlib.suppress(OSError):
            self.parent.rmdir()


def choose_containment(mode: ContainmentMode) -> Containment:
    """The mechanism for ``mode``; ``"cgroup"`` raises if this machine cannot provide it."""
    if mode == "subreaper":
        return SubreaperContainment()
    try:
        return CgroupContainment.create()
    except ContainmentUnavailable as exc:
        if mode == "cgroup":
            raise
        logger.info("cgroup v2 containment is unavailable (%s); using a subreaper", exc)
        return SubreaperContainment()


def become_subreaper() -> None:
    """Mark the calling process (a worker) as the reaper of its orphaned descendants."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:  # pragma: no cover - Linux only
        logger.warning("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d", ctypes.get_errno())


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, found by each process's parent in ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in _proc_pids():
        parent = _parent_of(entry)
        if parent is not None:
            children.setdefault(parent, []).append(entry)
    found: list[int] = []
    frontier = [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found.extend(below)
        frontier.extend(below)
    return found


def _proc_pids() -> Iterable[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces or parentheses itself.
    return text[text.rfind(")") + 2 :].split()


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _own_cgroup() -> Path:
    """The server's cgroup v2 directory, or ContainmentUnavailable."""
    mount = None
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            before, _, after = line.partition(" - ")
            if after.split(" ", 1)[0] == "cgroup2":
                mount = before.split()[4]
                break
    if mount is None:
        raise ContainmentUnavailable("no cgroup v2 hierarchy is mounted")
    relative = None
    with contextlib.suppress(OSError), open("/proc/self/cgroup", encoding="utf-8") as groups:
        for line in groups:
            if line.startswith("0::"):
                relative = line[3:].strip()
    if relative is None:
        raise ContainmentUnavailable("this process is in no cgroup v2 group")
    return Path(mount) / relative.lstrip("/")


def _remove_stale(own: Path) -> None:
    """Remove the empty groups of servers that were killed before they could clean up."""
    for parent in own.glob("tabpy-*"):
        pid = parent.name.removeprefix("tabpy-")
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        for group in parent.glob("worker-*"):
            with contextlib.suppress(OSError):  # not empty: something still runs there
                group.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()


def _enable_memory(parent: Path) -> bool:
    """Delegate the memory controller to the worker groups, if the hierarchy offers it."""
    try:
        if "memory" not in (parent / "cgroup.controllers").read_text().split():
            return False
        (parent / "cgroup.subtree_control").write_text("+memory")
    except OSError:
        return False
    return True
