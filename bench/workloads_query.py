"""Deployed-function workloads: /query throughput, tabpy.query latency, deploy-to-servable time.

Registered by importing this module in run.py. Each side deploys with its OWN client: ours with
``tabpy.tabpy_tools.client`` from the tree under test (the snapshot on our server's PYTHONPATH),
the reference with TabPy 2.16's client from bench/.ref-venv. Each client runs in a subprocess of
its own interpreter (``CLIENT_SCRIPT``, written into the run's work dir), so that the reference
interpreter imports its own ``tabpy`` and never ours.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpc
import servers
from registry import workload
from workloads import SIDES, _ms, _ratio, measure_throughput, report_throughput

ADD = "add"
QUERY_BODY = b'{"data": {"x": [1, 2, 3], "y": [4, 5, 6]}}'
QUERY_RESPONSE = [5, 7, 9]
# the bytes every good /query reply must contain, whatever each server's JSON spacing
_RESPONSE_RE = re.compile(rb'"response"\s*:\s*\[\s*5\s*,\s*7\s*,\s*9\s*\]')
TABPY_QUERY = (
    b"{\"script\": \"return tabpy.query('add', _arg1, _arg2)['response']\", "
    b'"data": {"_arg1": [1, 2, 3], "_arg2": [4, 5, 6]}}'
)
SETUP_TIMEOUT = 120.0  # seconds for one client subprocess to deploy `add`
DEPLOY_TIMEOUT = 60.0  # seconds per deploy (deploy() call plus waiting until it answers)

# Runs under either interpreter (ours or the reference venv's). argv: port, JSON spec
# {"deploys": [{"name", "k", "override"}], "deadline_s"}. Prints one "DEPLOYJSON {...}" line.
# The function must be defined in __main__ so that both clients pickle it by value.
CLIENT_SCRIPT = r'''
import http.client
import json
import sys
import time

T_START = time.perf_counter()


def make_add(k):
    def add(x, y):
        return [a + b + k for a, b in zip(x, y)]

    return add


QUERY_BODY = json.dumps({"data": {"x": [1, 2, 3], "y": [4, 5, 6]}})


def query_ok(conn, name, k):
    """(True, None) if POST /query/<name> answers 200 with the right response."""
    try:
        conn.request(
            "POST", "/query/" + name, QUERY_BODY, {"Content-Type": "application/json"}
        )
        r = conn.getresponse()
        body = r.read()
    except (OSError, http.client.HTTPException) as e:
        conn.close()  # reconnects on the next request
        return False, repr(e)
    if r.status == 200:
        try:
            if json.loads(body).get("response") == [5 + k, 7 + k, 9 + k]:
                return True, None
        except ValueError:
            pass
    return False, "%d %r" % (r.status, body[:200])


def main():
    port = int(sys.argv[1])
    spec = json.loads(sys.argv[2])
    import tabpy
    from tabpy.tabpy_tools.client import Client

    import_s = time.perf_counter() - T_START
    client = Client("http://127.0.0.1:%d/" % port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for d in spec["deploys"]:
        name, k = d["name"], d["k"]
        func = make_add(k)
        t0 = time.perf_counter()
        client.deploy(name, func, "bench: add with offset %d" % k, override=d["override"])
        t1 = time.perf_counter()
        polls, first_bad, last_bad = 0, None, None
        while True:
            polls += 1
            ok, bad = query_ok(conn, name, k)
            if ok:
                break
            first_bad = first_bad or bad
            last_bad = bad
            if time.perf_counter() - t0 > spec["deadline_s"]:
                sys.exit(
                    "deploy %s: not servable %.0f s after deploy() was called "
                    "(%d polls, last answer: %s)" % (name, spec["deadline_s"], polls, last_bad)
                )
            time.sleep(0.002)
        t2 = time.perf_counter()
        out.append(
            {
                "name": name,
                "deploy_s": t1 - t0,
                "servable_s": t2 - t0,
                "polls": polls,
                "first_bad": first_bad,
            }
        )
    report = {"tabpy": tabpy.__file__, "import_s": import_s, "deploys": out}
    print("DEPLOYJSON " + json.dumps(report))


main()
'''


def _client_python(srv: servers.Server) -> tuple[str, dict[str, str], Path | None]:
    """Interpreter, environment and expected tabpy root for the client of ``srv``'s side."""
    env = dict(srv.env)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if srv.kind == "reference":  # also the "ours" side under --ours-cmd ref
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        py = Path(srv.cmd[0]).parent / "python"  # <venv>/bin/tabpy -> <venv>/bin/python
        return str(py), env, py.parent.parent
    # under --ours-cmd there is no interpreter to borrow: use the bench's (the project venv)
    py = srv.cmd[0] if srv.cmd[1:3] == ["-m", "tabpy.cli.server"] else sys.executable
    src = env.get("PYTHONPATH")
    return py, env, Path(src.split(":")[0]) if src else None


def run_client(ctx, side: str, deploys: list[dict], timeout: float) -> dict:
    """Run CLIENT_SCRIPT for ``side`` with its own interpreter; return its DEPLOYJSON report."""
    srv = ctx.servers[side]
    py, env, root = _client_python(srv)
    cwd = srv.workdir.parent / f"client-{srv.workdir.name}"  # never the repo: no stray imports
    cwd.mkdir(exist_ok=True)
    script = cwd / "deploy_client.py"
    script.write_text(CLIENT_SCRIPT)
    spec = {"deploys": deploys, "deadline_s": DEPLOY_TIMEOUT}
    cmd = [py, str(script), str(srv.port), json.dumps(spec)]
    try:
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(
            f"{side} client: no result after {timeout:.0f}s ({py}); stderr: "
            f"{(e.stderr or b'')[-1500:]!r}"
        ) from None
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("DEPLOYJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(
            f"{side} client ({py}) failed with exit code {out.returncode}:\n"
            f"{out.stderr[-3000:]}{out.stdout[-1000:]}\n{srv.log_tail(15)}"
        )
    res = json.loads(line[len("DEPLOYJSON ") :])
    where = Path(res["tabpy"]).resolve()
    if root is not None and not where.is_relative_to(root.resolve()):
        raise RuntimeError(f"{side} client imported the wrong tabpy: {where} (want {root}/...)")
    return res


def _check_query_reply(side: str, r: httpc.Response) -> bytes:
    """Check one /query/add reply; return the bytes that every good reply must contain."""
    if r.status != 200:
        raise AssertionError(f"{side}: POST /query/{ADD} -> {r.status} {r.body[:300]!r}")
    reply = json.loads(r.body)
    if reply.get("response") != QUERY_RESPONSE or not {"model", "version", "uuid"} <= set(reply):
        raise AssertionError(f"{side}: POST /query/{ADD} -> unexpected {r.body[:300]!r}")
    found = _RESPONSE_RE.findall(r.body)
    if len(found) != 1:
        raise AssertionError(f"{side}: cannot find one response field in {r.body[:300]!r}")
    return found[0]


def _ensure_add(ctx) -> dict[str, bytes]:
    """Deploy ``add`` on both servers with each side's client unless it already answers."""
    marker = {}
    for side in SIDES:
        port = ctx.servers[side].port
        r = httpc.request(port, "POST", f"/query/{ADD}", QUERY_BODY, timeout=30)
        if r.status != 200:
            t0 = time.perf_counter()
            res = run_client(ctx, side, [{"name": ADD, "k": 0, "override": True}], SETUP_TIMEOUT)
            ctx.note(
                f"setup {side}: deployed `{ADD}` with its own client in "
                f"{res['deploys'][0]['servable_s'] * 1e3:.0f} ms "
                f"(subprocess {time.perf_counter() - t0:.1f}s; client from {res['tabpy']})"
            )
            r = httpc.request(port, "POST", f"/query/{ADD}", QUERY_BODY, timeout=30)
        marker[side] = _check_query_reply(side, r)
    return marker


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


# --- /query throughput -------------------------------------------------------------------------
@workload("query", order=50)
def query(ctx):
    """Throughput of POST /query/add (3-element lists), 16 keep-alive connections."""
    marker = _ensure_add(ctx)
    path = f"/query/{ADD}"
    res = measure_throughput(ctx, "query", path, QUERY_BODY, marker, contains=True)
    report_throughput(ctx, res, 4, "0 (200, response [5, 7, 9])")


# --- tabpy.query latency -----------------------------------------------------------------------
@workload("tabpy-query", order=55)
def tabpy_query(ctx):
    """Sequential /evaluate latency of `return tabpy.query('add', _arg1, _arg2)['response']`."""
    n = 100 if ctx.quick else 200
    warm = 10 if ctx.quick else 20
    _ensure_add(ctx)
    conns = {
        side: httpc.Connection("127.0.0.1", ctx.servers[side].port, timeout=30) for side in SIDES
    }
    lat: dict[str, list[float]] = {side: [] for side in SIDES}
    direct: dict[str, list[float]] = {side: [] for side in SIDES}
    bad: dict[str, list[str]] = {side: [] for side in SIDES}
    try:
        # requests alternate between the servers so that background noise hits both alike
        for i in range(warm + n):
            for side in SIDES:
                try:
                    r = conns[side].request("POST", "/evaluate", TABPY_QUERY)
                    good = r.status == 200 and json.loads(r.body) == QUERY_RESPONSE
                    what = f"{r.status} {r.body[:200]!r}"
                except (OSError, ValueError, httpc.HTTPError) as e:
                    conns[side].close()
                    r, good, what = None, False, repr(e)
                if not good:
                    bad[side].append(what)
                elif i >= warm:
                    lat[side].append(r.elapsed)
                    # the same call made directly, for comparison (information only)
                    d = conns[side].request("POST", f"/query/{ADD}", QUERY_BODY)
                    if d.status == 200:
                        direct[side].append(d.elapsed)
    finally:
        for c in conns.values():
            c.close()
    for side in SIDES:
        if not lat[side]:
            raise AssertionError(f"tabpy-query {side}: no good reply; first: {bad[side][:1]}")
    med = {side: statistics.median(lat[side]) for side in SIDES}
    p90 = {side: _pct(lat[side], 90) for side in SIDES}
    dmed = {side: statistics.median(direct[side]) for side in SIDES if direct[side]}
    for side in SIDES:
        ctx.note(
            f"tabpy-query {side}: {len(lat[side])} timed requests after {warm} warm-up; "
            f"min {min(lat[side]) * 1e3:.2f} ms, p50 {med[side] * 1e3:.2f} ms, "
            f"p90 {p90[side] * 1e3:.2f} ms, max {max(lat[side]) * 1e3:.2f} ms; "
            f"direct POST /query p50 {dmed.get(side, float('nan')) * 1e3:.2f} ms; "
            f"bad {len(bad[side])}" + (f" (first: {bad[side][0]})" if bad[side] else "")
        )
    ok = not bad["ours"]
    for label, val in (("median", med), ("p90", p90)):
        ratio = _ratio(val["ours"], val["reference"])
        ctx.row(
            f"latency ({label})",
            f"{val['ours'] * 1e3:.2f} ms",
            f"{val['reference'] * 1e3:.2f} ms",
            ratio,
            "<= 0.2x",
            ratio is not None and ratio <= 0.2 and ok,
        )
    if len(dmed) == 2:
        ctx.row(
            "direct /query (median)",
            f"{dmed['ours'] * 1e3:.2f} ms",
            f"{dmed['reference'] * 1e3:.2f} ms",
            _ratio(dmed["ours"], dmed["reference"]),
            "info",
        )
    ctx.row(
        "bad responses",
        f"{len(bad['ours'])}/{warm + n}",
        f"{len(bad['reference'])}/{warm + n}",
        None,
        "0 (200 [5, 7, 9])",
        ok,
    )


# --- deploy-to-servable ------------------------------------------------------------------------
@workload("deploy", order=60)
def deploy(ctx):
    """Deploy-to-servable time with each side's own client (new name per deploy)."""
    n = 3 if ctx.quick else 5
    tag = f"{int(time.time()) % 100000}"
    res = {}
    for side in SIDES:
        # 1 warm-up deploy (first use of the client in its process), then n timed ones; each
        # deploys a new name with its own offset k, so only the new function answers right
        deploys = [
            {"name": f"bench_deploy_{tag}_{i}", "k": 10 + i, "override": False}
            for i in range(n + 1)
        ]
        t0 = time.perf_counter()
        res[side] = run_client(ctx, side, deploys, 60 + (n + 1) * (DEPLOY_TIMEOUT + 15))
        ds = res[side]["deploys"]
        ctx.note(
            f"deploy {side}: client {res[side]['tabpy']} (import {res[side]['import_s']:.2f}s, "
            f"subprocess {time.perf_counter() - t0:.1f}s); warm-up "
            f"{ds[0]['servable_s'] * 1e3:.0f} ms; timed: "
            + ", ".join(
                f"{d['servable_s'] * 1e3:.0f} ms (deploy() {d['deploy_s'] * 1e3:.0f} ms, "
                f"{d['polls']} polls"
                + (f", first not-yet: {d['first_bad']}" if d["first_bad"] else "")
                + ")"
                for d in ds[1:]
            )
        )
    timed = {side: res[side]["deploys"][1:] for side in SIDES}
    total = {side: statistics.median(d["servable_s"] for d in timed[side]) for side in SIDES}
    call = {side: statistics.median(d["deploy_s"] for d in timed[side]) for side in SIDES}
    ratio = _ratio(total["ours"], total["reference"])
    ctx.row(
        "deploy to servable (median)",
        _ms(total["ours"]),
        _ms(total["reference"]),
        ratio,
        "<= 0.1x",
        ratio is not None and ratio <= 0.1,
    )
    ctx.row(
        "deploy() call returns (median)",
        _ms(call["ours"]),
        _ms(call["reference"]),
        _ratio(call["ours"], call["reference"]),
        "info",
    )
    first = {side: res[side]["deploys"][0]["servable_s"] for side in SIDES}
    ctx.row(
        "first deploy in the process",
        _ms(first["ours"]),
        _ms(first["reference"]),
        _ratio(first["ours"], first["reference"]),
        "info",
    )
