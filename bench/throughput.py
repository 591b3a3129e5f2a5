"""One closed-loop throughput measurement of one server, with the CPU each process used.

A requests/s figure alone does not say what limited it. So every measurement also reads the
CPU time (utime + stime from /proc/<pid>/stat) of every process of the server's tree before and
after the load, and the load generator's own CPU time (``wait4`` for wrk, the process's CPU
time for the in-process client). The tree is split by role:

* **server**: the processes that hold the listening socket of the HTTP port, i.e. the front
  end that parses HTTP and runs the framework (TabPy: its only process; ours: the uvicorn
  process, or several acceptors if the front end is ever split);
* **workers**: every other process of the tree, summed (script workers, their template,
  multiprocessing helpers).

``server_us_per_req`` = server CPU seconds / completed requests: the cost of one request in the
front end, which is what caps throughput when the front end is one process on one core.
"""

from __future__ import annotations

import math

import loadgen
import procfs
import servers


def drive(
    srv: servers.Server,
    path: str,
    body: bytes,
    expected: bytes,
    *,
    connections: int,
    duration: float,
    warm: float,
    tool: str = "auto",
    headers: dict[str, str] | None = None,
    contains: bool = False,
    loadgen_cpus: set[int] | None = None,
) -> dict:
    """Warm up for ``warm`` s, then load ``srv`` for ``duration`` s; the summary with CPU split.

    Adds to :func:`loadgen.run`'s summary: ``server_cpu_s``, ``workers_cpu_s``, ``server_cores``,
    ``workers_cores``, ``server_us_per_req``, ``server_pids`` and ``worker_pids``.
    """
    if warm > 0:
        loadgen.run(
            srv.port, path, body, expected, connections, warm, tool, headers, contains,
            loadgen_cpus,
        )  # fmt: skip
    pids = srv.tree()
    front = procfs.pids_listening_on(pids, srv.port) or pids[:1]
    before = procfs.cpu_snapshot(pids)
    r = loadgen.run(
        srv.port, path, body, expected, connections, duration, tool, headers, contains,
        loadgen_cpus,
    )  # fmt: skip
    after = procfs.cpu_snapshot(set(pids) | set(srv.tree()))
    used = procfs.cpu_used(before, after)
    server_s = sum(cpu for pid, cpu in used.items() if pid in front)
    workers = sorted(pid for pid in used if pid not in front)
    workers_s = sum(used[pid] for pid in workers)
    dur = r["duration_s"] or math.nan
    r.update(
        server_pids=sorted(front),
        worker_pids=workers,
        server_cpu_s=server_s,
        workers_cpu_s=workers_s,
        server_cores=server_s / dur,
        workers_cores=workers_s / dur,
        server_us_per_req=server_s / r["requests"] * 1e6 if r["requests"] else math.nan,
    )
    return r


def cpu_cell(r: dict) -> str:
    """``server / workers / load generator`` in cores, for a table cell."""
    workers = f"{r['workers_cores']:.2f}" if r["worker_pids"] else "-"
    return f"{r['server_cores']:.2f} / {workers} / {r['loadgen_cores']:.2f}"


def describe(label: str, r: dict) -> str:
    """One line for the details: requests, duration, tool, CPU split, latencies, bad replies."""
    return (
        f"{label}: {r['requests']} requests in {r['duration_s']:.2f}s on {r['connections']} "
        f"connections ({r['tool']}), ok={r['ok']} bad={r['bad']}; CPU cores: server "
        f"{r['server_cores']:.2f} (pids {r['server_pids']}), workers {r['workers_cores']:.2f} "
        f"({len(r['worker_pids'])} processes), load generator {r['loadgen_cores']:.2f}; "
        f"server CPU {r['server_us_per_req']:.0f} us/request; p50 {r['p50_ms']:.2f} ms, "
        f"p90 {r['p90_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.1f} ms"
        + (f"; first bad: {r['first_bad']}" if r["bad"] else "")
    )
