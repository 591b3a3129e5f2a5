"""What /proc says about the processes under test: CPU time, memory, listening sockets, affinity.

The parsers (``parse_stat``, ``parse_smaps_rollup``, ``parse_listeners``) are pure functions of
the file's text, so they are tested without a running server (tests/unit/test_bench_procfs.py).
Everything else reads /proc and tolerates processes that vanish while it looks: a worker may be
replaced at any moment, and a benchmark must not fail because of it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- /proc/<pid>/stat --------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat the benchmark uses (times in clock ticks)."""

    pid: int
    state: str
    ppid: int
    utime: int
    stime: int
    starttime: int

    @property
    def cpu_ticks(self) -> int:
        return self.utime + self.stime


def parse_stat(raw: bytes) -> Stat:
    """Parse one /proc/<pid>/stat line.

    The command name (field 2) is in parentheses and may itself hold spaces and ``)``, so the
    fields are counted from the LAST ``)``: after it come state (3), ppid (4), ..., utime (14),
    stime (15), ..., starttime (22), numbered as in proc(5).
    """
    close = raw.rfind(b")")
    if close < 0:
        raise ValueError(f"not a /proc/<pid>/stat line: {raw[:80]!r}")
    pid = int(raw[: raw.index(b"(")].strip())
    rest = raw[close + 2 :].split()
    return Stat(
        pid=pid,
        state=rest[0].decode(),
        ppid=int(rest[1]),
        utime=int(rest[11]),
        stime=int(rest[12]),
        starttime=int(rest[19]),
    )


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return parse_stat(f.read())
    except (OSError, ValueError, IndexError):
        return None


def children_map() -> dict[int, list[int]]:
    """ppid -> pids, for every process on the machine."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := read_stat(int(entry))) is not None:
            children.setdefault(st.ppid, []).append(st.pid)
    return children


def process_tree(pid: int) -> list[int]:
    """pid and all its live descendants."""
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if not os.path.exists(f"/proc/{p}"):
            continue
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


# --- CPU time ----------------------------------------------------------------------------------
#: A process is identified by (pid, starttime), so that a pid reused during a measurement is not
#: mistaken for the process that had it before.
ProcKey = tuple[int, int]


def cpu_snapshot(pids: Iterable[int]) -> dict[ProcKey, int]:
    """(pid, starttime) -> utime + stime in clock ticks, for the pids still alive."""
    out = {}
    for pid in pids:
        st = read_stat(pid)
        if st is not None:
            out[(pid, st.starttime)] = st.cpu_ticks
    return out


def cpu_used(before: dict[ProcKey, int], after: dict[ProcKey, int]) -> dict[int, float]:
    """pid -> CPU seconds used between two snapshots.

    A process that appears only in ``after`` started during the window and counts from zero.
    One that appears only in ``before`` exited and its last CPU time is lost (the kernel gives
    it to the parent only when the parent reaps it); workers do not exit during a throughput
    run, so this does not happen in practice.
    """
    return {key[0]: (ticks - before.get(key, 0)) / CLOCK_TICKS for key, ticks in after.items()}


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime (seconds) summed over pids."""
    return sum(cpu_snapshot(pids).values()) / CLOCK_TICKS


# --- memory ------------------------------------------------------------------------------------
_KB_LINE = re.compile(rb"^(\w+):\s+(\d+) kB$", re.M)


def parse_smaps_rollup(text: bytes) -> dict[str, int]:
    """Every ``Name: N kB`` field of /proc/<pid>/smaps_rollup, in kB (``Pss_Anon`` and so on)."""
    return {m.group(1).decode(): int(m.group(2)) for m in _KB_LINE.finditer(text)}


def smaps_rollup(pid: int) -> dict[str, int] | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            return parse_smaps_rollup(f.read())
    except OSError:
        return None


def memory_kb(pids: Iterable[int]) -> dict[str, int]:
    """Pss, Pss_Anon and Rss (kB) summed over pids, and how many were read.

    ``Pss_Anon`` is the anonymous memory (heap, stacks, private copies of copy-on-write pages)
    divided among the processes that share it: what each process really adds to the machine,
    without the shared libraries and files that the page cache holds anyway.
    """
    tot = {"pss": 0, "pss_anon": 0, "rss": 0, "nproc": 0}
    for pid in pids:
        fields = smaps_rollup(pid)
        if fields is None:
            continue
        tot["nproc"] += 1
        tot["pss"] += fields.get("Pss", 0)
        tot["pss_anon"] += fields.get("Pss_Anon", 0)
        tot["rss"] += fields.get("Rss", 0)
    return tot


# --- listening sockets -------------------------------------------------------------------------
def parse_listeners(table: str) -> dict[str, int]:
    """Socket inode -> local port, for the LISTEN rows of /proc/net/tcp or /proc/net/tcp6."""
    out = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A":  # 0A = TCP_LISTEN
            out[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return out


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def _listeners() -> dict[str, int]:
    out = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                out.update(parse_listeners(f.read()))
        except OSError:
            continue
    return out


def listening_ports(pids: Iterable[int]) -> set[int]:
    """TCP ports in LISTEN state whose sockets belong to ``pids``."""
    listen = _listeners()
    return {listen[i] for pid in pids for i in _socket_inodes(pid) if i in listen}


def pids_listening_on(pids: Iterable[int], port: int) -> list[int]:
    """Those of ``pids`` that hold a listening socket on ``port``: the HTTP front end.

    This names the server process(es) by what they do, not by their place in the tree, so it
    stays right when the front end is several acceptor processes sharing the port.
    """
    listen = _listeners()
    return [pid for pid in pids if any(listen.get(i) == port for i in _socket_inodes(pid))]


# --- CPU affinity ------------------------------------------------------------------------------
def thread_ids(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def pin(pids: Iterable[int], cpus: set[int]) -> int:
    """Restrict every thread of ``pids`` to ``cpus``; returns how many threads were pinned.

    Processes and threads started later inherit the mask of their parent, so pinning a whole
    tree also pins the workers it forks afterwards.
    """
    n = 0
    for pid in pids:
        for tid in thread_ids(pid):
            try:
                os.sched_setaffinity(tid, cpus)
                n += 1
            except OSError:  # the thread ended meanwhile
                continue
    return n
