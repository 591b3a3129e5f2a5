"""How cost grows: with concurrent connections, with cores, with rows per request.

Registered by importing this module in run.py. Each workload also hands its points to
``ctx.point(...)``, from which ``plots.py`` draws the PNGs (both servers on the same axes).
"""

from __future__ import annotations

import math
import os
import statistics
import time

import httpc
import procfs
import throughput
from registry import workload
from workloads import (
    CONNECTIONS,
    SIDES,
    TRIVIAL,
    TRIVIAL_REPLY,
    _large_payload,
    _ratio,
)

SWEEP_CONNECTIONS = (1, 16, 64, 256)
ROW_COUNTS = (10, 100, 1_000, 10_000, 100_000, 1_000_000)


# --- connections -------------------------------------------------------------------------------
@workload("connections", order=12)
def connections(ctx):
    """Trivial /evaluate at 1, 16, 64 and 256 connections: requests/s, p99, CPU split."""
    duration = 2.0 if ctx.quick else 5.0
    warm = 1.0
    for n in SWEEP_CONNECTIONS:
        res = {}
        for side in SIDES:
            res[side] = r = throughput.drive(
                ctx.servers[side],
                "/evaluate",
                TRIVIAL,
                TRIVIAL_REPLY,
                connections=n,
                duration=duration,
                warm=warm,
                tool=ctx.loadgen,
            )
            ctx.note(throughput.describe(f"connections {side}", r))
            ctx.point(
                "connections",
                side,
                connections=n,
                rps=r["rps"],
                p50_ms=r["p50_ms"],
                p99_ms=r["p99_ms"],
                server_us_per_req=r["server_us_per_req"],
                bad=r["bad"],
            )
        o, f = res["ours"], res["reference"]
        bad = o["bad"] + f["bad"]
        ctx.row(
            f"{n} conns: requests/s",
            f"{o['rps']:.0f}",
            f"{f['rps']:.0f}",
            _ratio(o["rps"], f["rps"]),
            "info" if not bad else f"{o['bad']}+{f['bad']} bad",
            None if not bad else o["bad"] == 0,
        )
        ctx.row(
            f"{n} conns: p99 latency",
            f"{o['p99_ms']:.2f} ms",
            f"{f['p99_ms']:.2f} ms",
            _ratio(o["p99_ms"], f["p99_ms"]),
            "info",
        )
        ctx.row(
            f"{n} conns: CPU server / workers / gen; µs/req",
            f"{throughput.cpu_cell(o)}; {o['server_us_per_req']:.0f}",
            f"{throughput.cpu_cell(f)}; {f['server_us_per_req']:.0f}",
            None,
            "info",
        )


# --- cores -------------------------------------------------------------------------------------
@workload("cores", order=13)
def cores(ctx):
    """Trivial /evaluate, 16 conns, each server's whole tree pinned to 1 core, then to 2 cores."""
    allowed = sorted(os.sched_getaffinity(0))
    duration = 3.0 if ctx.quick else 10.0
    warm = 1.0 if ctx.quick else 2.0
    if len(allowed) < 2:
        ctx.note(f"cores: skipped, the bench may use only CPUs {allowed}")
        ctx.row("skipped (needs 2 CPUs)", "-", "-", None, "info")
        return
    layouts = []
    for k in (1, 2):
        server_cpus = set(allowed[:k])
        rest = set(allowed[k:])
        layouts.append((k, server_cpus, rest or None))
    rps: dict[tuple[str, int], float] = {}
    for k, server_cpus, gen_cpus in layouts:
        res = {}
        for side in SIDES:
            srv = ctx.servers[side]
            n = procfs.pin(srv.tree(), server_cpus)
            try:
                res[side] = r = throughput.drive(
                    srv,
                    "/evaluate",
                    TRIVIAL,
                    TRIVIAL_REPLY,
                    connections=CONNECTIONS,
                    duration=duration,
                    warm=warm,
                    tool=ctx.loadgen,
                    loadgen_cpus=gen_cpus,
                )
            finally:
                procfs.pin(srv.tree(), set(allowed))
            rps[(side, k)] = r["rps"]
            where = (
                f"load generator on CPUs {sorted(gen_cpus)}"
                if gen_cpus
                else "load generator unpinned, sharing them"
            )
            ctx.note(
                throughput.describe(
                    f"cores {side} ({n} threads pinned to CPUs {sorted(server_cpus)}, {where})",
                    r,
                )
            )
            ctx.point("cores", side, cores=k, rps=r["rps"], p99_ms=r["p99_ms"])
        o, f = res["ours"], res["reference"]
        label = f"{k} core{'s' if k > 1 else ''}"
        ctx.row(
            f"requests/s, {label}, {CONNECTIONS} conns",
            f"{o['rps']:.0f}",
            f"{f['rps']:.0f}",
            _ratio(o["rps"], f["rps"]),
            "info",
        )
        ctx.row(
            f"  {label}: CPU server / workers / gen; µs/req",
            f"{throughput.cpu_cell(o)}; {o['server_us_per_req']:.0f}",
            f"{throughput.cpu_cell(f)}; {f['server_us_per_req']:.0f}",
            None,
            "info",
        )
    gain = {side: _ratio(rps[(side, 2)], rps[(side, 1)]) for side in SIDES}
    ctx.row(
        "scaling: 2 cores / 1 core",
        f"{gain['ours']:.2f}x",
        f"{gain['reference']:.2f}x",
        None,
        "info",
    )
    ctx.note(
        "cores: at 1 core the load generator runs on the other core; at 2 cores it shares "
        "both cores with the server tree, so the 2-core figures are a lower bound."
    )


@workload("cores-acceptors", order=14, profile={"TABPY_ACCEPTORS": "2"})
def cores_acceptors(ctx):
    """`cores` with TABPY_ACCEPTORS = 2: two front-end processes (the reference ignores it)."""
    cores(ctx)


# --- rows per request --------------------------------------------------------------------------
def _ms(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 0.01 else f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.2f} s"


def _check_sum(side: str, r: httpc.Response, a: list[float], b: list[float]) -> None:
    import orjson

    if r.status != 200:
        raise AssertionError(f"rows {side}: status {r.status} {r.body[:300]!r}")
    res = orjson.loads(r.body)
    if len(res) != len(a):
        raise AssertionError(f"rows {side}: {len(res)} values, want {len(a)}")
    for j in {0, len(a) // 2, len(a) - 1}:
        if not math.isclose(res[j], a[j] + b[j], rel_tol=1e-12, abs_tol=1e-9):
            raise AssertionError(f"rows {side}: row {j} = {res[j]}, want {a[j] + b[j]}")


def _floor_once(body: bytes) -> float:
    """In-process: parse, the same pandas computation, serialise (as ``large``'s floor)."""
    import orjson
    import pandas

    t0 = time.perf_counter()
    d = orjson.loads(body)["data"]
    orjson.dumps((pandas.Series(d["_arg1"]) + pandas.Series(d["_arg2"])).tolist())
    return time.perf_counter() - t0


def _reps(rows: int, quick: bool) -> int:
    if rows >= 1_000_000:
        return 1 if quick else 3
    if rows >= 100_000:
        return 3 if quick else 5
    return 10 if quick else 20


@workload("rows", order=25)
def rows(ctx):
    """Latency of /evaluate (pandas sum of two float columns) from 10 to 1,000,000 rows."""
    for n in ROW_COUNTS:
        a, b, body = _large_payload(n)
        reps = _reps(n, ctx.quick)
        conns = {
            side: httpc.Connection("127.0.0.1", ctx.servers[side].port, timeout=600)
            for side in SIDES
        }
        times: dict[str, list[float]] = {side: [] for side in SIDES}
        try:
            for i in range(reps + 1):  # run 0 is the warm-up; sides alternate (noise alike)
                for side in SIDES:
                    r = conns[side].request("POST", "/evaluate", body)
                    _check_sum(side, r, a, b)
                    if i:
                        times[side].append(r.elapsed)
        finally:
            for c in conns.values():
                c.close()
        floor = statistics.median(_floor_once(body) for _ in range(reps))
        med = {side: statistics.median(times[side]) for side in SIDES}
        for side in SIDES:
            ctx.point(
                "rows",
                side,
                rows=n,
                median_s=med[side],
                min_s=min(times[side]),
                max_s=max(times[side]),
                floor_s=floor,
            )
        ctx.note(
            f"rows {n:,}: body {len(body) / 1e6:.3f} MB, {reps} timed runs + 1 warm-up; "
            + "; ".join(f"{side} {', '.join(_ms(t) for t in times[side])}" for side in SIDES)
            + f"; in-process floor {_ms(floor)}"
        )
        ctx.row(
            f"{n:,} rows: latency (median)",
            _ms(med["ours"]),
            _ms(med["reference"]),
            _ratio(med["ours"], med["reference"]),
            f"floor {_ms(floor)}",
        )
