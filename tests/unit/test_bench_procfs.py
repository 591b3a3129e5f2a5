"""The benchmark's /proc readers (bench/procfs.py): the parsers, and a look at this process."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("the benchmark reads Linux's /proc", allow_module_level=True)

_PATH = Path(__file__).resolve().parents[2] / "bench" / "procfs.py"
_LOADER_INFO = importlib.util.spec_from_file_location("bench_procfs", _PATH)
assert _LOADER_INFO is not None and _LOADER_INFO.loader is not None
procfs = importlib.util.module_from_spec(_LOADER_INFO)
sys.modules[_LOADER_INFO.name] = procfs  # dataclasses look their module up while the file runs
_LOADER_INFO.loader.exec_module(procfs)


def _stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, start: int) -> bytes:
    # fields 3..22 of proc(5): state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
    # cminflt, majflt, cmajflt, utime, stime, cutime, cstime, priority, nice, num_threads,
    # itrealvalue, starttime; then a few more that the parser must ignore
    rest = ["S", ppid, 1, 1, 0, -1, 4194560, 10, 0, 0, 0, utime, stime, 7, 8, 20, 0, 1, 0, start]
    rest += [123456, 789, 0]
    return f"{pid} ({comm}) ".encode() + " ".join(map(str, rest)).encode() + b"\n"


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    raw = _stat_line(4242, "python -m x) (y", ppid=17, utime=150, stime=25, start=99887)
    st = procfs.parse_stat(raw)
    assert (st.pid, st.state, st.ppid) == (4242, "S", 17)
    assert (st.utime, st.stime, st.cpu_ticks, st.starttime) == (150, 25, 175, 99887)


def test_parse_stat_rejects_a_line_without_a_command_name() -> None:
    with pytest.raises(ValueError, match="not a /proc"):
        procfs.parse_stat(b"garbage")


def test_parse_stat_of_this_process_matches_os() -> None:
    st = procfs.read_stat(os.getpid())
    assert st is not None
    assert (st.pid, st.ppid) == (os.getpid(), os.getppid())
    # the process has run this test: it has used CPU, and no more than os.times() reports
    times = os.times()
    assert 0 < st.cpu_ticks / procfs.CLOCK_TICKS <= times.user + times.system + 0.05


SMAPS_ROLLUP = b"""\
55d0c0000000-7ffc1c5fe000 ---p 00000000 00:00 0                          [rollup]
Rss:              135044 kB
Pss:              122315 kB
Pss_Dirty:         70012 kB
Pss_Anon:          68712 kB
Pss_File:          53603 kB
Pss_Shmem:             0 kB
Shared_Clean:      12000 kB
Anonymous:         68712 kB
THPeligible:           0
"""


def test_parse_smaps_rollup_reads_every_kb_field() -> None:
    fields = procfs.parse_smaps_rollup(SMAPS_ROLLUP)
    assert fields["Pss_Anon"] == 68712
    assert fields["Pss"] == 122315
    assert fields["Rss"] == 135044
    assert "THPeligible" not in fields  # not a kB field


def test_memory_of_this_process_has_anonymous_pss() -> None:
    mem = procfs.memory_kb([os.getpid()])
    assert mem["nproc"] == 1
    assert 0 < mem["pss_anon"] <= mem["pss"] <= mem["rss"]


def test_memory_skips_processes_that_are_gone() -> None:
    assert procfs.memory_kb([2**22 + 12345])["nproc"] == 0


def test_cpu_used_counts_new_processes_from_zero_and_tells_reused_pids_apart() -> None:
    tick = procfs.CLOCK_TICKS
    before = {(10, 500): 2 * tick, (11, 600): 5 * tick}
    # 10 used 1 s more; 11 exited and its pid went to a new process (start time 900) that has
    # used 0.5 s; 12 is new
    after = {(10, 500): 3 * tick, (11, 900): tick // 2, (12, 950): tick}
    used = procfs.cpu_used(before, after)
    assert used == pytest.approx({10: 1.0, 11: (tick // 2) / tick, 12: 1.0})


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1
   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 31338 1
   2: 00000000:2329 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31339 1
"""


def test_parse_listeners_keeps_listening_sockets_only() -> None:
    assert procfs.parse_listeners(TCP_TABLE) == {"31337": 8080, "31339": 9001}


def test_pids_listening_on_finds_this_process_by_its_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert procfs.pids_listening_on([os.getpid()], port) == [os.getpid()]
        assert port in procfs.listening_ports([os.getpid()])
    assert procfs.pids_listening_on([os.getpid()], port) == []
