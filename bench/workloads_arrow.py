"""Arrow Flight (Tableau Prep) workload (registered by importing this module in run.py).

One round trip is what Tableau Prep's script step does: put a table over Flight, run a script
on it with ``/evaluate`` and ``"dataPath"``, fetch the derived table it returns. Both servers
run with ``TABPY_ARROW_ENABLE`` and ``TABPY_ARROWFLIGHT_PORT = 0``; each side's Flight port is
found among the listening sockets of its process tree (TabPy does not log the real port).

Memory is sampled on the warm-up round trip and on one extra one, not on the timed runs (the
sampling would slow them): every 10 ms, the PSS of the server's whole tree without shared
memory (``Pss_Anon + Pss_File`` from ``/proc/<pid>/smaps_rollup``) plus the growth of the
machine's shared memory (``Shmem`` in ``/proc/meminfo``; our tables live in memfds, which no
per-process counter shows while they are not mapped). Two figures: the target one is the peak
of one round trip on a warm server minus its idle value just before (the memory a table needs
while it passes through); the other is the peak since before the first round trip, which adds
what the first runs leave behind (imports, allocator caches, gRPC buffers) in the server and
in each worker.
"""

from __future__ import annotations

import json
import re
import statistics
import threading
import time
from pathlib import Path

import httpc
import procfs
import servers
from registry import workload
from workloads import SIDES, _ms, _ratio

ROWS = 1_000_000
PUT_BATCH_ROWS = 65_536
# Tableau Prep's typical script: add a computed column, return the whole table.
SCRIPT = "df = _arg1\ndf['total'] = df['a'] + df['b'] * df['c']\nreturn df"
SAMPLE_SECONDS = 0.01
ROUND_TRIP_TARGET = 1.0  # ours / reference, for the 1M-row and the 1,000-row round trip
ARROW_ROW_COUNTS = (1_000, 10_000, 100_000, 1_000_000)


def _table(rows: int = ROWS):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(7)
    return pa.table(
        {
            "a": rng.random(rows),
            "b": rng.random(rows),
            "c": rng.random(rows),
            "d": rng.integers(0, 1_000_000, rows),
            "e": rng.random(rows),
        }
    )


def _flight_port(srv: servers.Server, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ports = procfs.listening_ports(srv.tree()) - {srv.port}
        if len(ports) == 1:
            return ports.pop()
        time.sleep(0.05)
    raise RuntimeError(f"{srv.label}: no Arrow Flight listener found (ports {ports})")


def _round_trip(client, port: int, table) -> tuple[float, float, float, object]:
    """(put, evaluate, get) seconds and the fetched table."""
    import pyarrow.flight as flight

    t0 = time.perf_counter()
    action = flight.Action("getUniquePath", b"")
    path = next(iter(client.do_action(action))).body.to_pybytes().decode()
    writer, _ = client.do_put(flight.FlightDescriptor.for_path(path), table.schema)
    writer.write_table(table, max_chunksize=PUT_BATCH_ROWS)
    writer.close()
    t1 = time.perf_counter()
    body = json.dumps({"script": SCRIPT, "dataPath": path}).encode()
    reply = httpc.request(port, "POST", "/evaluate", body, timeout=300)
    t2 = time.perf_counter()
    if reply.status != 200:
        raise AssertionError(f"/evaluate answered {reply.status}: {reply.body[:300]!r}")
    output = json.loads(reply.body)["outputDataPath"]
    info = client.get_flight_info(flight.FlightDescriptor.for_path(output))
    result = client.do_get(info.endpoints[0].ticket).read_all()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, result


def _check(result, table) -> None:
    rows = table.num_rows
    if result.num_rows != rows or result.column_names[:6] != ["a", "b", "c", "d", "e", "total"]:
        raise AssertionError(f"unexpected result: {result.num_rows} rows, {result.column_names}")
    for i in sorted({0, rows // 3, rows - 1}):
        a, b, c = (table.column(name)[i].as_py() for name in "abc")
        if abs(result.column("total")[i].as_py() - (a + b * c)) > 1e-9:
            raise AssertionError(f"wrong total in row {i}")


def _shmem_kb() -> int:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"^Shmem:\s+(\d+) kB", text, re.M).group(1))


def _private_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for key in ("Pss_Anon", "Pss_File"):
            match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
            if match:
                total += int(match.group(1))
    return total


def _memory_kb(srv: servers.Server, shmem0: int) -> int:
    return _private_kb(srv.tree()) + _shmem_kb() - shmem0


class _Sampler:
    """The peak memory of a server tree while ``sampling`` (see the module docstring)."""

    def __init__(self, srv: servers.Server) -> None:
        self.srv = srv
        self.shmem0 = _shmem_kb()
        self.idle = self.peak = _memory_kb(srv, self.shmem0)

    def sampling(self, fn, *args):
        done = threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_SECONDS):
                self.peak = max(self.peak, _memory_kb(self.srv, self.shmem0))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            return fn(*args)
        finally:
            done.set()
            sampler.join()
            self.peak = max(self.peak, _memory_kb(self.srv, self.shmem0))


@workload(
    "arrow-flight",
    order=70,
    profile={"TABPY_ARROW_ENABLE": "true", "TABPY_ARROWFLIGHT_PORT": "0"},
)
def arrow_flight(ctx):
    """1M x 5 table: Flight put, /evaluate with dataPath (derived table), Flight get."""
    import pyarrow.flight as flight

    runs = 3 if ctx.quick else 5
    table = _table()
    arrow_mb = table.nbytes / 1e6
    timings, memory, growth_since_start = {}, {}, {}
    for side in SIDES:
        srv = ctx.servers[side]
        port = _flight_port(srv)
        client = flight.connect(f"grpc+tcp://127.0.0.1:{port}")
        since_start = _Sampler(srv)
        try:
            warm_up = since_start.sampling(_round_trip, client, srv.port, table)
            _check(warm_up[3], table)
            runs_s = [_round_trip(client, srv.port, table)[:3] for _ in range(runs)]
            one_trip = _Sampler(srv)
            one_trip.sampling(since_start.sampling, _round_trip, client, srv.port, table)
            memory[side] = (one_trip.idle, one_trip.peak)
            growth_since_start[side] = since_start.peak - since_start.idle
        finally:
            client.close()
        timings[side] = runs_s
        totals = [sum(r) for r in runs_s]
        put, ev, get = (statistics.median(r[i] for r in runs_s) for i in range(3))
        idle, peak = memory[side]
        ctx.note(
            f"arrow-flight {side}: Flight port {port}; total {', '.join(_ms(t) for t in totals)}; "
            f"median put {_ms(put)}, evaluate {_ms(ev)}, get {_ms(get)}; memory idle "
            f"{idle / 1024:.0f} MB, peak {peak / 1024:.0f} MB"
        )
    total = {side: statistics.median(sum(r) for r in timings[side]) for side in SIDES}
    ratio = _ratio(total["ours"], total["reference"])
    ctx.row(
        "round trip (put + evaluate + get)",
        _ms(total["ours"]),
        _ms(total["reference"]),
        ratio,
        f"<= {ROUND_TRIP_TARGET:g}x",
        ratio is not None and ratio <= ROUND_TRIP_TARGET,
    )
    for i, step in enumerate(("put", "evaluate", "get")):
        ours = statistics.median(r[i] for r in timings["ours"])
        ref = statistics.median(r[i] for r in timings["reference"])
        ctx.row(f"  {step}", _ms(ours), _ms(ref), _ratio(ours, ref), "info")
    growth = {side: (memory[side][1] - memory[side][0]) / 1024 * 1.048576 for side in SIDES}
    ctx.row(
        f"peak memory of a round trip (table {arrow_mb:.0f} MB)",
        f"{growth['ours']:.0f} MB ({growth['ours'] / arrow_mb:.1f}x)",
        f"{growth['reference']:.0f} MB ({growth['reference'] / arrow_mb:.1f}x)",
        _ratio(growth["ours"], growth["reference"]),
        "ours <= 3x table",
        growth["ours"] <= 3 * arrow_mb,
    )
    start = {side: growth_since_start[side] / 1024 * 1.048576 for side in SIDES}
    ctx.row(
        "  peak memory since start",
        f"{start['ours']:.0f} MB ({start['ours'] / arrow_mb:.1f}x)",
        f"{start['reference']:.0f} MB ({start['reference'] / arrow_mb:.1f}x)",
        _ratio(start["ours"], start["reference"]),
        "info",
    )


@workload(
    "arrow-rows",
    order=75,
    profile={"TABPY_ARROW_ENABLE": "true", "TABPY_ARROWFLIGHT_PORT": "0"},
)
def arrow_rows(ctx):
    """Flight round trip (put + evaluate + get) of a 5-column table, 1,000 to 1,000,000 rows."""
    import pyarrow.flight as flight

    ports = {side: _flight_port(ctx.servers[side]) for side in SIDES}
    clients = {side: flight.connect(f"grpc+tcp://127.0.0.1:{ports[side]}") for side in SIDES}
    try:
        for n in ARROW_ROW_COUNTS:
            table = _table(n)
            reps = (2 if ctx.quick else 5) if n >= 1_000_000 else (5 if ctx.quick else 10)
            steps: dict[str, list[tuple[float, float, float]]] = {side: [] for side in SIDES}
            for i in range(reps + 1):  # run 0 is the warm-up; sides alternate (noise alike)
                for side in SIDES:
                    *times, result = _round_trip(clients[side], ctx.servers[side].port, table)
                    _check(result, table)
                    if i:
                        steps[side].append(tuple(times))
            total = {side: statistics.median(sum(t) for t in steps[side]) for side in SIDES}
            for side in SIDES:
                put, ev, get = (statistics.median(t[k] for t in steps[side]) for k in range(3))
                ctx.point(
                    "arrow",
                    side,
                    rows=n,
                    total_s=total[side],
                    min_s=min(sum(t) for t in steps[side]),
                    max_s=max(sum(t) for t in steps[side]),
                    put_s=put,
                    evaluate_s=ev,
                    get_s=get,
                )
                ctx.note(
                    f"arrow-rows {side} {n:,} rows ({table.nbytes / 1e6:.2f} MB): total "
                    f"{', '.join(_ms(sum(t)) for t in steps[side])}; median put {_ms(put)}, "
                    f"evaluate {_ms(ev)}, get {_ms(get)}"
                )
            ratio = _ratio(total["ours"], total["reference"])
            targeted = n in (1_000, ROWS)
            ctx.row(
                f"{n:,} rows: round trip",
                _ms(total["ours"]),
                _ms(total["reference"]),
                ratio,
                f"<= {ROUND_TRIP_TARGET:g}x" if targeted else "info",
                (ratio is not None and ratio <= ROUND_TRIP_TARGET) if targeted else None,
            )
    finally:
        for client in clients.values():
            client.close()
